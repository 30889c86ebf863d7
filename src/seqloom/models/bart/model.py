"""``BARTModel``: the shared transformer encoder-decoder plus named sentence-classification heads.

The module names are fairseq's (``encoder``, ``decoder``, ``classification_heads.{name}.dense/out_proj``), so
state dicts match fairseq's key for key. ``BARTModel.from_pretrained(dir, ...)`` returns the BART hub
(:mod:`seqloom.hub.bart`), as in fairseq.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from seqloom.models.bart.config import BARTConfig
from seqloom.models.bart.upgrades import adapt_heads_and_vocab
from seqloom.models.transformer.model import TransformerModel
from seqloom.modules.activations import activation_fn
from seqloom.modules.attention import MultiheadAttention
from seqloom.modules.masks import padding_mask
from seqloom.modules.transformer import (
    DecoderOut,
    EncoderOut,
    OutputFeatures,
    TransformerDecoder,
    TransformerEncoder,
    run_layer,
)
from seqloom.modules.transformer_layers import dropout

logger = logging.getLogger(__name__)


class ClassificationHead(nn.Module):
    """fairseq's ``BARTClassificationHead``: dropout, ``dense``, activation, dropout, ``out_proj``."""

    def __init__(self, input_dim: int, inner_dim: int, num_classes: int, *, activation: str, pooler_dropout: float
                 ) -> None:  # fmt: skip
        super().__init__()
        self.dense = nn.Linear(input_dim, inner_dim)
        self.activation = activation_fn(activation)
        self.pooler_dropout = pooler_dropout
        self.out_proj = nn.Linear(inner_dim, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        """``(B, C)`` sentence representations -> ``(B, num_classes)`` logits."""
        x = dropout(features, self.pooler_dropout, self.training)
        x = self.activation(self.dense(x))
        return self.out_proj(dropout(x, self.pooler_dropout, self.training))


@dataclass
class BARTFeatures:
    """What :meth:`BARTModel.features` returns."""

    features: Tensor  # (B, T, C) decoder output before the vocabulary projection
    encoder_out: EncoderOut
    inner_states: list[Tensor] | None  # (B, T, C) each: decoder input embeddings, then every layer's output


def last_eos_representation(features: Tensor, src_tokens: Tensor, eos: int) -> Tensor:
    """``(B, C)``: the features at each row's last ``eos`` of ``src_tokens`` (fairseq's sentence representation).

    Every row must hold the same number of ``eos`` tokens, as fairseq requires.
    """
    eos_mask = src_tokens.eq(eos)  # (B, T)
    counts = eos_mask.sum(dim=1)
    if bool((counts != counts[0]).any()) or int(counts[0]) == 0:
        raise ValueError(
            f"all rows must hold the same (non-zero) number of </s> tokens, got {counts.tolist()}; "
            "encode each input with hub.encode() (one </s> per sentence)"
        )
    return features[eos_mask, :].view(features.size(0), -1, features.size(-1))[:, -1, :]  # (B, C)


class BARTModel(TransformerModel):
    """BART: :class:`TransformerModel` plus ``classification_heads`` (an ``nn.ModuleDict``)."""

    cfg: BARTConfig

    def __init__(self, encoder: TransformerEncoder, decoder: TransformerDecoder, *, cfg: BARTConfig, eos: int = 2
                 ) -> None:  # fmt: skip
        super().__init__(encoder, decoder, cfg=cfg)
        self.classification_heads = nn.ModuleDict()
        self.eos = eos

    hub_family = "bart"

    @classmethod
    def from_pretrained(cls, model_name_or_path: str | os.PathLike[str], checkpoint_file: str = "model.pt", data_name_or_path: str = ".",
                        bpe: str = "gpt2", **overrides: Any) -> Any:  # fmt: skip
        """fairseq's ``BARTModel.from_pretrained``: a local BART directory -> :class:`~seqloom.hub.bart.BARTHub`
        (found through the hub registry, as :meth:`TransformerModel.from_pretrained` explains)."""
        return super().from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path, bpe=bpe, **overrides)

    def register_classification_head(self, name: str, num_classes: int, inner_dim: int | None = None) -> None:
        """Adds (or replaces) the head ``name``: ``dense`` d -> ``inner_dim`` (default d), ``out_proj`` -> classes."""
        dim = self.cfg.encoder_embed_dim
        for what, value in (("num_classes", num_classes), ("inner_dim", inner_dim)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"classification head {name!r}: {what} must be a positive int (got {value!r})")
        if name in self.classification_heads:
            old = self.classification_heads[name]
            assert isinstance(old, ClassificationHead)
            if (old.out_proj.out_features, old.dense.out_features) != (num_classes, inner_dim or dim):
                logger.warning("re-registering head %r with num_classes %d and inner_dim %d", name, num_classes,
                               inner_dim or dim)  # fmt: skip
        head = ClassificationHead(dim, inner_dim or dim, num_classes, activation=self.cfg.pooler_activation_fn,
                                  pooler_dropout=self.cfg.pooler_dropout)  # fmt: skip
        self.classification_heads[name] = head.to(self.encoder.embed_tokens.weight)

    def features(self, src_tokens: Tensor, prev_output_tokens: Tensor, *, return_all_hiddens: bool = False
                 ) -> BARTFeatures:  # fmt: skip
        """Decoder features ``(B, T, C)`` (no vocabulary projection) for teacher-forced ``prev_output_tokens``."""
        encoder_out = self.encode(src_tokens)
        if not return_all_hiddens:
            x, _ = self.decoder.extract_features(prev_output_tokens, encoder_out)
            return BARTFeatures(x, encoder_out, None)
        x, states = decoder_hidden_states(self.decoder, prev_output_tokens, encoder_out)
        return BARTFeatures(x, encoder_out, states)

    def forward(  # type: ignore[override]
        self,
        src_tokens: Tensor,
        src_lengths: Tensor | None,
        prev_output_tokens: Tensor,
        *,
        features_only: bool = False,
        classification_head_name: str | None = None,
        output_mask: Tensor | None = None,
        project: bool = True,
    ) -> DecoderOut | OutputFeatures:
        """Logits ``(B, T, V)`` (``(N, V)`` at the True positions of ``output_mask`` ``(B, T)``, or with
        ``project=False`` :class:`OutputFeatures` there); ``features_only``: features ``(B, T, C)`` in
        ``logits``; with a head name, the head's ``(B, num_classes)`` scores of each row's last ``</s>``
        representation."""
        if classification_head_name is None and not features_only:
            return self.decoder(prev_output_tokens, self.encode(src_tokens), output_mask=output_mask, project=project)
        x = self.features(src_tokens, prev_output_tokens).features  # (B, T, C)
        if classification_head_name is not None:
            if classification_head_name not in self.classification_heads:
                raise KeyError(
                    f"no classification head {classification_head_name!r} (registered: "
                    f"{', '.join(self.classification_heads) or 'none'}); register it with "
                    "register_classification_head or --classification-head-name"
                )
            x = self.classification_heads[classification_head_name](last_eos_representation(x, src_tokens, self.eos))
        return DecoderOut(logits=x, attn=None)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Loads fairseq BART weights after fairseq's BART upgrades (see :func:`upgrades.adapt_heads_and_vocab`)."""
        return super().load_state_dict(adapt_heads_and_vocab(self, dict(state_dict)), strict=strict, assign=assign)


def decoder_hidden_states(decoder: TransformerDecoder, tokens: Tensor, encoder_out: EncoderOut
                          ) -> tuple[Tensor, list[Tensor]]:  # fmt: skip
    """The decoder's features ``(B, T, C)`` and its inner states: the embedded input, then each layer's output.

    fairseq's ``return_all_hiddens``; the final layer norm / projection (pre-norm models) only touch the features.
    """
    x = decoder.embed(tokens)  # (B, T, C)
    pad = padding_mask(tokens, decoder.padding_idx)  # (B, T)
    self_padding = pad if bool(pad.any()) else None
    states = [x]
    for layer in decoder.layers:
        x, _ = run_layer(layer, x, encoder_out.out, encoder_out.padding_mask, self_padding_mask=self_padding)
        states.append(x)
    if decoder.layer_norm is not None:
        x = decoder.layer_norm(x)
    if decoder.project_out_dim is not None:
        x = decoder.project_out_dim(x)
    return x, states


@torch.no_grad()
def init_bert_params(module: nn.Module) -> None:
    """fairseq's ``init_bert_params`` (BART's initialisation): N(0, 0.02) weights, zero biases and padding rows.

    Applied with ``model.apply`` over fairseq's module tree, so a seeded build draws fairseq's weights.
    """
    if isinstance(module, nn.Linear):
        module.weight.normal_(mean=0.0, std=0.02)
        if module.bias is not None:
            module.bias.zero_()
    if isinstance(module, nn.Embedding):
        module.weight.normal_(mean=0.0, std=0.02)
        if module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    if isinstance(module, MultiheadAttention):
        for proj in (module.q_proj, module.k_proj, module.v_proj):
            proj.weight.normal_(mean=0.0, std=0.02)
