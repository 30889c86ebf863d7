"""``TransformerModel``: fairseq's encoder-decoder transformer, batch-first, with an explicit KV cache."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom import components
from seqloom.models.transformer.config import TransformerConfig
from seqloom.modules.kv_cache import KVCache
from seqloom.modules.transformer import DecoderOut, EncoderOut, OutputFeatures, TransformerDecoder, TransformerEncoder


class TransformerModel(nn.Module):
    """An encoder and a decoder; attribute names (``encoder``, ``decoder``) give fairseq's state-dict keys."""

    def __init__(self, encoder: TransformerEncoder, decoder: TransformerDecoder, *, cfg: TransformerConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.cfg = cfg

    # the family whose hub from_pretrained loads (registry.HUBS)
    hub_family = "transformer"

    @classmethod
    def from_pretrained(cls, model_name_or_path: str | os.PathLike[str], checkpoint_file: str = "model.pt", data_name_or_path: str = ".",
                        **overrides: Any) -> Any:  # fmt: skip
        """fairseq's ``TransformerModel.from_pretrained``: a local model directory -> its hub (a translation hub
        whose ``models`` are instances of this class), with fairseq's keyword overrides (``tokenizer='moses'``,
        ``bpe='subword_nmt'``, ``bpe_codes=...``, generation options); see :mod:`seqloom.hub.pretrained`."""
        # The hub is found by family name in the hub registry, not imported: the hubs import this module to
        # build models, so an import of them here would be a cycle (models -> hub -> models).
        return components.load_pretrained(cls.hub_family, model_name_or_path, checkpoint_file, data_name_or_path,
                                          **overrides)  # fmt: skip

    def encode(self, src_tokens: Tensor) -> EncoderOut:
        """``src_tokens`` ``(B, S)``, padded with the dictionary's pad -> :class:`EncoderOut`."""
        return self.encoder(src_tokens)

    def decode(
        self,
        prev_output_tokens: Tensor,
        encoder_out: EncoderOut | None,
        *,
        cache: KVCache | None = None,
        need_attn: bool = False,
    ) -> DecoderOut:
        """Logits ``(B, T, V)`` for ``prev_output_tokens`` ``(B, T)``.

        With a ``cache``, pass only the newest tokens (``(B, 1)``); positions continue from the cache.
        ``need_attn`` returns the last layer's head-averaged cross-attention ``(B, T, S)``.
        """
        return self.decoder(prev_output_tokens, encoder_out, cache=cache, need_attn=need_attn)

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` rows and up to ``max_len`` decoding steps."""
        return self.decoder.new_cache(batch_size, max_len)

    # forward takes ``output_mask`` (criterions then project only the target positions), and ``project=False``
    # with it (criterions then fuse the vocabulary product with their loss)
    supports_output_mask = True
    supports_output_features = True
    # ``decode`` accepts an encoder output with one row per g decoder rows (beam search's K hypotheses of
    # a sentence share it), see :class:`seqloom.modules.attention.MultiheadAttention`
    shares_source_across_beams = True

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Tensor | None,
        prev_output_tokens: Tensor,
        *,
        output_mask: Tensor | None = None,
        need_attn: bool = False,
        project: bool = True,
    ) -> DecoderOut | OutputFeatures:
        """Teacher-forced forward: ``(B, S)`` sources, ``(B, T)`` shifted targets -> logits ``(B, T, V)``,
        or ``(N, V)`` at the ``N`` True positions of ``output_mask`` ``(B, T)``.

        ``need_attn`` also returns the alignment layer's cross-attention ``(B, T, S)``; with
        ``--full-context-alignment`` it comes from a second decoder pass without the causal mask, as fairseq's
        transformer_align computes it. ``src_lengths`` is accepted for fairseq's calling convention; padding
        comes from the tokens. ``project=False`` (with ``output_mask``) returns :class:`OutputFeatures`.
        """
        encoder_out = self.encode(src_tokens)
        out = self.decoder(prev_output_tokens, encoder_out, output_mask=output_mask, need_attn=need_attn,
                           project=project)  # fmt: skip
        if need_attn and isinstance(out, DecoderOut) and self.cfg.full_context_alignment:
            _, out.attn = self.decoder.extract_features(prev_output_tokens, encoder_out, need_attn=True,
                                                        full_context=True)  # fmt: skip
        return out

    @staticmethod
    def get_normalized_probs(logits: Tensor, log_probs: bool = True) -> Tensor:
        """Float32 (log-)softmax over the vocabulary; log-probabilities are natural log."""
        logits = logits.float()
        return F.log_softmax(logits, dim=-1) if log_probs else F.softmax(logits, dim=-1)

    def max_positions(self) -> tuple[int, int]:
        return self.encoder.max_positions(), self.decoder.max_positions()

    @torch.no_grad()
    def reorder_cache(self, cache: KVCache, new_order: Tensor) -> None:
        cache.reorder(new_order)
