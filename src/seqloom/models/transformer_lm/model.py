"""``TransformerLM``: fairseq's decoder-only ``transformer_lm``, batch-first, with an explicit KV cache.

It offers the encoder-decoder interface the sequence generator drives (``encode``/``decode``/``new_cache``):
``encode`` returns an empty :class:`EncoderOut` (no source), so prompts are generated from as forced
prefixes, exactly as fairseq's language-modeling task does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom import components
from seqloom.models.transformer_lm.config import TransformerLMConfig
from seqloom.modules.adaptive_softmax import AdaptiveSoftmax
from seqloom.modules.kv_cache import KVCache
from seqloom.modules.masks import count_positions, select_positions
from seqloom.modules.transformer import (
    DecoderOut,
    EncoderOut,
    OutputFeatures,
    PositionalEmbedding,
    TransformerDecoder,
    project_vocab,
)
from seqloom.modules.transformer_layers import TransformerDecoderLayer
from seqloom.modules.vocab_projection import VocabProjection, vocab_logits


@contextmanager
def _skipping(module: nn.Module, name: str) -> Iterator[nn.Module]:
    """Runs a block with submodule ``name`` unset (the shared decoder then skips it); yields the submodule."""
    sub = getattr(module, name)
    setattr(module, name, None)
    try:
        yield sub
    finally:
        setattr(module, name, sub)


class LMDecoder(TransformerDecoder):
    """The shared :class:`TransformerDecoder` without cross-attention, optionally ending in an adaptive softmax.

    With an adaptive softmax there is no ``output_projection``: ``forward`` returns the features
    ``(B, T, C_out)`` in ``DecoderOut.logits`` and :meth:`TransformerLM.get_normalized_probs` turns them into
    log-probabilities (fairseq's ``output_layer`` does the same).
    """

    def __init__(
        self,
        embed_tokens: nn.Module,
        embed_positions: PositionalEmbedding | None,
        layers: Sequence[TransformerDecoderLayer],
        output_projection: nn.Linear | None,
        *,
        embed_scale: float,
        dropout: float,
        project_in_dim: nn.Linear | None = None,
        layernorm_embedding: nn.LayerNorm | None = None,
        layer_norm: nn.LayerNorm | None = None,
        project_out_dim: nn.Linear | None = None,
        adaptive_softmax: AdaptiveSoftmax | None = None,
        max_target_positions: int = 1024,
        layerdrop: float = 0.0,
        checkpoint_activations: bool = False,
    ) -> None:
        if (output_projection is None) == (adaptive_softmax is None):
            raise ValueError("LMDecoder needs exactly one of output_projection and adaptive_softmax")
        super().__init__(
            embed_tokens,  # type: ignore[arg-type]  # nn.Embedding or AdaptiveInput
            embed_positions,
            layers,
            output_projection,  # type: ignore[arg-type]
            embed_scale=embed_scale,
            dropout=dropout,
            project_in_dim=project_in_dim,
            layernorm_embedding=layernorm_embedding,
            layer_norm=layer_norm,
            project_out_dim=project_out_dim,
            max_target_positions=max_target_positions,
            layerdrop=layerdrop,
            checkpoint_activations=checkpoint_activations,
        )
        self.adaptive_softmax = adaptive_softmax

    def forward(
        self,
        tokens: Tensor,
        encoder_out: EncoderOut | None,
        *,
        cache: KVCache | None = None,
        need_attn: bool = False,
        output_mask: Tensor | None = None,
        project: bool = True,
    ) -> DecoderOut | OutputFeatures:
        if self.output_projection is None:
            if output_mask is not None:
                raise ValueError("an adaptive softmax decoder returns features for every position (no output_mask)")
            x, _ = self.extract_features(tokens, None, cache=cache)  # (B, T, C_out)
            return DecoderOut(logits=x, attn=None)  # features for the adaptive softmax
        n = tokens.numel() if output_mask is None else count_positions(output_mask)
        foldable = isinstance(self.project_out_dim, nn.Linear) and isinstance(self.output_projection, nn.Linear)
        if not foldable or not self._fold_is_cheaper(n):  # not foldable: absent, or int8 (modules.int8)
            x, _ = self.extract_features(tokens, None, cache=cache)  # (B, T, C_out)
            if output_mask is not None:
                x = select_positions(x, output_mask)  # (N, C_out)
                if not project and isinstance(self.output_projection, VocabProjection):
                    return OutputFeatures(x, self.output_projection.weight)
            return project_vocab(self.output_projection, x, None, cache)
        # project_out_dim (C -> C_out) then the vocabulary (C_out -> V), e.g. transformer_lm's 512-wide default
        # output, as one (V, C) product: no dropout lies between them, and gradients reach both weights
        with _skipping(self, "project_out_dim") as project_out:
            x, _ = self.extract_features(tokens, None, cache=cache)  # (B, T, C)
        x = x if output_mask is None else select_positions(x, output_mask)  # (N, C)
        fold = self.output_projection.weight @ cast(nn.Linear, project_out).weight  # (V, C)
        if not project and output_mask is not None:
            return OutputFeatures(x, fold)
        return DecoderOut(logits=vocab_logits(x, fold), attn=None)

    def _fold_is_cheaper(self, n: int) -> bool:
        """Whether ``n`` positions cost fewer multiplies through the folded (V, C) matrix (made per call)."""
        assert self.project_out_dim is not None and self.output_projection is not None
        c, c_out = self.project_out_dim.in_features, self.project_out_dim.out_features
        v = self.output_projection.out_features
        return v * c_out * c + n * c * v < n * c_out * (c + v)

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        ref = next(self.layers.parameters()) if len(self.layers) else next(self.parameters())
        return KVCache(
            num_layers=len(self.layers),
            batch_size=batch_size,
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            max_len=max_len,
            dtype=ref.dtype,
            device=ref.device,
        )


class TransformerLM(nn.Module):
    """A causal transformer decoder over one vocabulary; ``decoder`` gives fairseq's state-dict keys."""

    def __init__(self, decoder: LMDecoder, *, cfg: TransformerLMConfig) -> None:
        super().__init__()
        self.decoder = decoder
        self.cfg = cfg

    # the family whose hub from_pretrained loads (registry.HUBS)
    hub_family = "transformer_lm"

    @classmethod
    def from_pretrained(cls, model_name_or_path: str | os.PathLike[str], checkpoint_file: str = "model.pt", data_name_or_path: str = ".",
                        **overrides: Any) -> Any:  # fmt: skip
        """fairseq's ``TransformerLanguageModel.from_pretrained``: a local model directory -> its language-model hub
        (see :mod:`seqloom.hub.language_model`)."""
        # found by family name in the hub registry, not imported: the hub imports this module (a cycle otherwise)
        return components.load_pretrained(cls.hub_family, model_name_or_path, checkpoint_file, data_name_or_path,
                                          **overrides)  # fmt: skip

    def encode(self, src_tokens: Tensor) -> EncoderOut:
        """No encoder: an empty :class:`EncoderOut` ``(B, 0, C)`` that the generator can reorder."""
        bsz = src_tokens.size(0)
        ref = next(self.parameters())
        return EncoderOut(
            out=ref.new_zeros((bsz, 0, self.decoder.head_dim * self.decoder.num_heads)),
            padding_mask=torch.zeros((bsz, 0), dtype=torch.bool, device=src_tokens.device),
        )

    def decode(
        self,
        prev_output_tokens: Tensor,
        encoder_out: EncoderOut | None = None,
        *,
        cache: KVCache | None = None,
        need_attn: bool = False,
    ) -> DecoderOut:
        """Next-token scores ``(B, T, V)`` for ``prev_output_tokens`` ``(B, T)`` (``encoder_out`` is ignored).

        With a ``cache`` pass only the newest tokens (``(B, 1)``). With an adaptive softmax the "logits" are
        the final features; pass them to :meth:`get_normalized_probs`.
        """
        return self.decoder(prev_output_tokens, None, cache=cache)

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` rows and up to ``max_len`` decoding steps."""
        return self.decoder.new_cache(batch_size, max_len)

    @property
    def supports_output_mask(self) -> bool:
        """Whether ``forward`` takes ``output_mask`` (not with an adaptive softmax, which needs every position)."""
        return self.decoder.adaptive_softmax is None

    # forward(..., output_mask=..., project=False) returns OutputFeatures (criterions fuse the last product)
    supports_output_features = True

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Tensor | None = None,
        *,
        output_mask: Tensor | None = None,
        project: bool = True,
    ) -> DecoderOut | OutputFeatures:
        """Teacher-forced forward over ``src_tokens`` ``(B, T)`` (right-padded) -> scores ``(B, T, V)``, or
        ``(N, V)`` at the ``N`` True positions of ``output_mask`` ``(B, T)`` (or, with ``project=False``,
        :class:`OutputFeatures` there)."""
        return self.decoder(src_tokens, None, output_mask=output_mask, project=project)

    def get_normalized_probs(self, logits: Tensor, log_probs: bool = True, *, target: Tensor | None = None) -> Tensor:
        """Float32 (log-)probabilities ``(B, T, V)``, natural log.

        With an adaptive softmax ``logits`` are the decoder's features; given ``target`` ``(B, T)`` only the
        band of each row's target is computed (read only the target column then).
        """
        adaptive = self.decoder.adaptive_softmax
        if adaptive is not None:
            lprobs = adaptive.get_log_prob(logits.float(), target=target)
            return lprobs if log_probs else lprobs.exp()
        logits = logits.float()
        return F.log_softmax(logits, dim=-1) if log_probs else F.softmax(logits, dim=-1)

    def target_log_probs(self, logits: Tensor, target: Tensor) -> Tensor:
        """``(B, T)`` float32 log-probabilities (natural log) of ``target`` ``(B, T)`` only.

        Equal to gathering :meth:`get_normalized_probs`, without writing the ``(B, T, V)`` log-softmax:
        ``logit[target] - logsumexp(logits)`` (scoring is bound by memory traffic, not arithmetic).
        """
        idx = target.unsqueeze(-1)  # (B, T, 1)
        if self.decoder.adaptive_softmax is not None:
            return self.get_normalized_probs(logits, target=target).gather(-1, idx).squeeze(-1)
        x = logits.float()  # (B, T, V)
        return x.gather(-1, idx).squeeze(-1) - torch.logsumexp(x, dim=-1)

    def max_positions(self) -> tuple[int, int]:
        """The longest sequence the model reads, as (input, output) so generators and batching can share it."""
        n = self.decoder.max_positions()
        return n, n

    @torch.no_grad()
    def reorder_cache(self, cache: KVCache, new_order: Tensor) -> None:
        cache.reorder(new_order)


TransformerLanguageModel = TransformerLM  # fairseq's name of this model class
