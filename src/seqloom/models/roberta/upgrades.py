"""fairseq's RoBERTa state-dict upgrades, applied by :meth:`RobertaModel.load_state_dict`.

They sit apart from :mod:`seqloom.models.roberta.interop` (which builds models, hence imports the model module)
so that the model can use them without an import cycle; the table in :mod:`~seqloom.models.roberta.interop`
says what they do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

import torch
from torch import Tensor, nn

from seqloom.models.bart.upgrades import head_sizes
from seqloom.models.roberta.config import RobertaConfig

logger = logging.getLogger(__name__)

HEADS = "classification_heads."


class HeadedEncoder(Protocol):
    """What the upgrades use of a RoBERTa model: its config and its classification heads."""

    cfg: RobertaConfig
    classification_heads: nn.ModuleDict

    def register_classification_head(self, name: str, num_classes: int, inner_dim: int) -> None: ...


def rename_old_keys(sd: dict[str, Tensor]) -> None:
    """fairseq <= 0.9 names (``decoder.*``, ``emb_layer_norm``) and fused ``in_proj`` weights, in place."""
    for key in list(sd):
        new = "encoder" + key[len("decoder") :] if key.startswith("decoder.") else key
        new = new.replace(".emb_layer_norm.", ".layernorm_embedding.")
        if new != key:
            sd[new] = sd.pop(key)
    for key in [k for k in sd if k.endswith(("in_proj_weight", "in_proj_bias"))]:
        kind = "weight" if key.endswith("weight") else "bias"
        prefix = key[: -len(f"in_proj_{kind}")]
        fused = sd.pop(key)
        dim = fused.shape[0] // 3
        for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
            sd[f"{prefix}{name}.{kind}"] = fused[i * dim : (i + 1) * dim]


def checkpoint_heads(sd: Mapping[str, Tensor]) -> dict[str, tuple[int, int]]:
    """``{name: (num_classes, inner_dim)}`` of the classification heads stored in a state dict."""
    names = {k[len(HEADS) :].split(".", 1)[0] for k in sd if k.startswith(HEADS)}
    heads = {}
    for name in sorted(names):
        out = sd.get(f"{HEADS}{name}.out_proj.weight", sd.get(f"{HEADS}{name}.out_proj.weight_orig"))
        dense = sd.get(f"{HEADS}{name}.dense.weight")
        if out is None or dense is None:
            raise ValueError(f"classification head {name!r}: the checkpoint lacks its out_proj/dense weights")
        heads[name] = (int(out.shape[0]), int(dense.shape[0]))
    return heads


def upgrade_state_dict(model: HeadedEncoder, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """fairseq's ``RobertaModel.upgrade_state_dict_named`` for ``model``; see the table in ``interop``."""
    rename_old_keys(sd)
    for name, (classes, inner) in checkpoint_heads(sd).items():
        head = model.classification_heads[name] if name in model.classification_heads else None
        if head is None and model.cfg.load_checkpoint_heads:
            model.register_classification_head(name, classes, inner)
            continue
        if head_sizes(head) != (classes, inner):
            why = "not present in current model" if head is None else "with different dimensions than current model"
            logger.warning("deleting classification head (%s) from checkpoint %s", name, why)
            for key in [k for k in sd if k.startswith(f"{HEADS}{name}.")]:
                del sd[key]
    for key, value in model.classification_heads.state_dict().items():
        sd.setdefault(HEADS + key, value)
    if not model.cfg.untie_weights_roberta and "encoder.sentence_encoder.embed_tokens.weight" in sd:
        sd.setdefault("encoder.lm_head.weight", sd["encoder.sentence_encoder.embed_tokens.weight"])
    sd.setdefault("encoder.sentence_encoder.version", torch.tensor([3.0]))
    for key in [k for k in sd if k.startswith("encoder.regression_head") or k == "encoder._ema"]:
        del sd[key]
    return sd
