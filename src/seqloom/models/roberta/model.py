"""``RobertaModel``: a transformer encoder, a masked-LM head and named sentence-classification heads.

Module names are fairseq's (``encoder.sentence_encoder.*``, ``encoder.lm_head.{dense,layer_norm,weight,bias}``,
``classification_heads.{name}.{dense,out_proj}``), so state dicts match fairseq's key for key. Tensors are
batch-first; ``inner_states`` are ``(B, T, C)`` (fairseq's model returns them time-first, its hub transposes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom import components
from seqloom.models.roberta.config import RobertaConfig
from seqloom.models.roberta.upgrades import upgrade_state_dict
from seqloom.modules.activations import activation_fn
from seqloom.modules.fast_encoder import fast_encode, uses_fast_encoder
from seqloom.modules.int8 import int8_linear, quantize_parameter
from seqloom.modules.masks import any_true, padding_mask
from seqloom.modules.transformer import TransformerEncoder, layers_to_run, run_layer
from seqloom.modules.transformer_layers import dropout
from seqloom.modules.vocab_projection import vocab_logits

logger = logging.getLogger(__name__)


class LMHead(nn.Module):
    """fairseq's ``RobertaLMHead``: ``dense``, activation, ``layer_norm``, then ``x @ weight.T + bias``.

    ``weight`` is the token embedding's matrix (tied) or, with ``--untie-weights-roberta``, its own. After
    :meth:`quantize_int8` it is an int8 copy with row scales ``weight_scale`` (the embedding keeps its float32).
    """

    weight_scale: Tensor  # (V,) float32: the int8 matrix's row scales (after quantize_int8 only)

    def __init__(self, embed_dim: int, vocab_size: int, *, activation: str, weight: nn.Parameter | None) -> None:
        super().__init__()
        self.dense = nn.Linear(embed_dim, embed_dim)
        self.activation = activation_fn(activation)
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.weight = weight if weight is not None else nn.Linear(embed_dim, vocab_size, bias=False).weight
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, features: Tensor) -> Tensor:
        """``(..., C)`` features -> ``(..., V)`` logits."""
        x = self.layer_norm(self.activation(self.dense(features)))
        if self.weight.dtype == torch.int8:  # quantize_int8
            return int8_linear(x, self.weight, self.weight_scale, self.bias.detach())  # int8 runs inference only
        return vocab_logits(x, self.weight) + self.bias

    def quantize_int8(self) -> None:
        """The vocabulary matrix as int8 rows and scales (:func:`~seqloom.modules.int8.quantize_model` calls it)."""
        quantize_parameter(self, "weight")


class ClassificationHead(nn.Module):
    """fairseq's ``RobertaClassificationHead`` over the ``<s>`` position: dropout, ``dense``, activation, dropout,
    ``out_proj`` (spectral-normalised with ``--spectral-norm-classification-head``: keys ``weight_orig/_u/_v``)."""

    def __init__(self, input_dim: int, inner_dim: int, num_classes: int, *, activation: str, pooler_dropout: float,
                 spectral_norm: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.dense = nn.Linear(input_dim, inner_dim)
        self.activation = activation_fn(activation)
        self.pooler_dropout = pooler_dropout
        out_proj = nn.Linear(inner_dim, num_classes)
        self.out_proj = nn.utils.spectral_norm(out_proj) if spectral_norm else out_proj

    def forward(self, features: Tensor) -> Tensor:
        """``(B, T, C)`` features -> ``(B, num_classes)`` scores of each row's first position (``<s>``)."""
        x = dropout(features[:, 0, :], self.pooler_dropout, self.training)  # (B, C)
        x = self.activation(self.dense(x))
        return self.out_proj(dropout(x, self.pooler_dropout, self.training))


@dataclass
class RobertaOutput:
    """What :meth:`RobertaModel.forward` returns."""

    logits: Tensor  # (B, T, V) LM logits, (N, V) at masked_tokens, (B, T, C) features, or (B, classes) head scores
    inner_states: list[Tensor] | None = None  # (B, T, C) each: embeddings, then every layer (return_all_hiddens)


def encoder_states(encoder: TransformerEncoder, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
    """The encoder's features ``(B, T, C)`` and fairseq's ``inner_states``: the (pad-zeroed) embeddings, then
    each layer's output; the final layer norm (pre-norm models) only touches the features."""
    pad = padding_mask(tokens, encoder.padding_idx)  # (B, T)
    has_pads = any_true(pad)
    x = encoder.embed(tokens)  # (B, T, C)
    if has_pads:
        x = x * (1 - pad.unsqueeze(-1).type_as(x))
    states = [x]
    keep = layers_to_run(len(encoder.layers), encoder.layerdrop, encoder.training)
    for layer, run in zip(encoder.layers, keep):
        if run:
            x = run_layer(layer, x, pad if has_pads else None)
            states.append(x)
    if encoder.layer_norm is not None:
        x = encoder.layer_norm(x)
    return x, states


class RobertaEncoder(nn.Module):
    """``sentence_encoder`` (the transformer encoder) and ``lm_head``; fairseq's ``RobertaEncoder``."""

    def __init__(self, sentence_encoder: TransformerEncoder, lm_head: LMHead) -> None:
        super().__init__()
        self.sentence_encoder = sentence_encoder
        self.lm_head = lm_head

    def extract_features(self, src_tokens: Tensor, *, return_all_hiddens: bool = False
                         ) -> tuple[Tensor, list[Tensor] | None]:  # fmt: skip
        """``(B, T)`` right-padded tokens -> features ``(B, T, C)`` (and the inner states if asked)."""
        if uses_fast_encoder(self.sentence_encoder):  # eval mode: the same kernels with less Python around them
            return fast_encode(self.sentence_encoder, src_tokens, return_all_hiddens=return_all_hiddens)
        if return_all_hiddens:
            x, states = encoder_states(self.sentence_encoder, src_tokens)
            return x, states
        return self.sentence_encoder(src_tokens).out, None

    def max_positions(self) -> int:
        return self.sentence_encoder.max_positions()


class RobertaModel(nn.Module):
    """RoBERTa / XLM-R: :class:`RobertaEncoder` plus ``classification_heads`` (an ``nn.ModuleDict``)."""

    supports_masked_tokens = True  # forward(..., masked_tokens=...) projects only those rows (--task masked_lm)

    def __init__(self, encoder: RobertaEncoder, *, cfg: RobertaConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.cfg = cfg
        self.classification_heads = nn.ModuleDict()

    # the family whose hub from_pretrained loads (registry.HUBS); XLMRModel's hub default is sentencepiece
    hub_family = "roberta"
    default_bpe = "gpt2"

    @classmethod
    def from_pretrained(cls, model_name_or_path: Any, checkpoint_file: str = "model.pt", data_name_or_path: str = ".",
                        **kwargs: Any) -> Any:  # fmt: skip
        """fairseq's ``RobertaModel.from_pretrained``: a local directory -> :class:`~seqloom.hub.roberta.RobertaHub`.

        The hub is found by family name in the hub registry, not imported (the hub imports this module)."""
        kwargs.setdefault("bpe", cls.default_bpe)
        return components.load_pretrained(cls.hub_family, model_name_or_path, checkpoint_file, data_name_or_path,
                                          **kwargs)  # fmt: skip

    def register_classification_head(self, name: str, num_classes: int | None = None, inner_dim: int | None = None,
                                     **unused: Any) -> None:  # fmt: skip
        """Adds (or replaces) head ``name``: ``dense`` d -> ``inner_dim`` (default d), ``out_proj`` -> classes."""
        if num_classes is None or isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"classification head {name!r}: num_classes must be a positive int (got {num_classes!r})")
        dim = self.cfg.encoder_embed_dim
        if name in self.classification_heads:
            old = self.classification_heads[name]
            assert isinstance(old, ClassificationHead)
            if (old.out_proj.out_features, old.dense.out_features) != (num_classes, inner_dim or dim):
                logger.warning("re-registering head %r with num_classes %d and inner_dim %d", name, num_classes,
                               inner_dim or dim)  # fmt: skip
        head = ClassificationHead(dim, inner_dim or dim, num_classes, activation=self.cfg.pooler_activation_fn,
                                  pooler_dropout=self.cfg.pooler_dropout,
                                  spectral_norm=self.cfg.spectral_norm_classification_head)  # fmt: skip
        self.classification_heads[name] = head.to(self.encoder.sentence_encoder.embed_tokens.weight)

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Tensor | None = None,
        *,
        features_only: bool = False,
        return_all_hiddens: bool = False,
        classification_head_name: str | None = None,
        masked_tokens: Tensor | None = None,
    ) -> RobertaOutput:
        """``src_tokens`` ``(B, T)`` (right-padded) -> LM logits ``(B, T, V)``, or ``(N, V)`` at the ``N`` True
        positions of ``masked_tokens`` ``(B, T)``; ``features_only``: features ``(B, T, C)``; with a head name,
        the head's ``(B, num_classes)`` scores."""
        x, states = self.encoder.extract_features(src_tokens, return_all_hiddens=return_all_hiddens)
        if classification_head_name is not None:
            if classification_head_name not in self.classification_heads:
                raise KeyError(
                    f"no classification head {classification_head_name!r} (registered: "
                    f"{', '.join(self.classification_heads) or 'none'}); register it with "
                    "register_classification_head or --classification-head-name"
                )
            return RobertaOutput(self.classification_heads[classification_head_name](x), states)
        if features_only:
            return RobertaOutput(x, states)
        if masked_tokens is not None:
            x = x[masked_tokens]  # (N, C): only the masked rows are projected
        return RobertaOutput(self.encoder.lm_head(x), states)

    def get_normalized_probs(self, logits: Tensor, log_probs: bool = True) -> Tensor:
        """Float32 (log-)probabilities over the vocabulary's last dimension (natural log)."""
        logits = logits.float()
        return F.log_softmax(logits, dim=-1) if log_probs else F.softmax(logits, dim=-1)

    def max_positions(self) -> int:
        return self.encoder.max_positions()

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Loads fairseq RoBERTa weights after fairseq's upgrades (see :func:`upgrades.upgrade_state_dict`)."""
        return super().load_state_dict(upgrade_state_dict(self, dict(state_dict)), strict=strict, assign=assign)
