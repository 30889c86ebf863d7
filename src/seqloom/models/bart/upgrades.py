"""fairseq's BART state-dict upgrades, applied by :meth:`BARTModel.load_state_dict` (heads and ``<mask>`` row).

They sit apart from :mod:`seqloom.models.bart.interop` (which builds models, hence imports the model module) so
that the model can use them without an import cycle; the table in :mod:`~seqloom.models.bart.interop` says
what they do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from torch import Tensor, nn

from seqloom.models.bart.config import BARTConfig
from seqloom.models.transformer.interop import upgrade_state_dict
from seqloom.modules.int8 import Int8Linear
from seqloom.modules.transformer import TransformerEncoder

logger = logging.getLogger(__name__)

HEADS = "classification_heads."
EMBEDDING_KEYS = (
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
    "encoder.output_projection.weight",
    "decoder.output_projection.weight",
)


class HeadedEncoderDecoder(Protocol):
    """What the upgrades read of a BART model: its config, encoder (embedding rows) and classification heads."""

    cfg: BARTConfig
    encoder: TransformerEncoder
    classification_heads: nn.ModuleDict


def checkpoint_heads(sd: Mapping[str, Tensor]) -> dict[str, tuple[int, int]]:
    """``{name: (num_classes, inner_dim)}`` of the classification heads stored in a state dict."""
    names = {k[len(HEADS) :].split(".", 1)[0] for k in sd if k.startswith(HEADS)}
    heads = {}
    for name in sorted(names):
        out, dense = sd.get(f"{HEADS}{name}.out_proj.weight"), sd.get(f"{HEADS}{name}.dense.weight")
        if out is None or dense is None:
            raise ValueError(f"classification head {name!r}: the checkpoint lacks its out_proj/dense weights")
        heads[name] = (int(out.shape[0]), int(dense.shape[0]))
    return heads


def head_sizes(head: nn.Module | None) -> tuple[int, int] | None:
    """``(num_classes, inner_dim)`` of a classification head (``out_proj`` and ``dense`` layers, float or int8);
    None otherwise."""
    out_proj, dense = getattr(head, "out_proj", None), getattr(head, "dense", None)
    if isinstance(out_proj, (nn.Linear, Int8Linear)) and isinstance(dense, (nn.Linear, Int8Linear)):
        return out_proj.out_features, dense.out_features
    return None


def adapt_heads_and_vocab(model: HeadedEncoderDecoder, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """fairseq's ``BARTModel.upgrade_state_dict_named`` for ``model`` (heads and ``<mask>`` row); see the table."""
    sd = upgrade_state_dict(sd, model.cfg)
    for name, (classes, inner) in checkpoint_heads(sd).items():
        head = model.classification_heads[name] if name in model.classification_heads else None
        if head_sizes(head) != (classes, inner):
            why = "the model has no such head" if head is None else "its sizes differ from the model's head"
            logger.warning("the checkpoint's classification head %s is dropped: %s", name, why)
            for key in [k for k in sd if k.startswith(f"{HEADS}{name}.")]:
                del sd[key]
    for key, value in model.classification_heads.state_dict().items():
        sd.setdefault(HEADS + key, value)
    rows = model.encoder.embed_tokens.weight.shape[0]
    if "encoder.embed_tokens.weight" in sd and sd["encoder.embed_tokens.weight"].shape[0] == rows + 1:
        for key in EMBEDDING_KEYS:
            if key in sd:
                sd[key] = sd[key][:-1]
    return sd
