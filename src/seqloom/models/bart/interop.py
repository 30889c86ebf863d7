"""fairseq BART checkpoints <-> seqloom's :class:`BARTModel`.

fairseq 0.10-0.12 BART checkpoints (and seqloom's own) load with no key mapping: the module names are
fairseq's. What fairseq does on top when it loads BART weights, done here too:

=========================================================  ============================================
checkpoint                                                  what happens
=========================================================  ============================================
old transformer keys (fused ``in_proj``, ``layer_norms``,   the transformer's upgrades
``embed_out``)                                              (:mod:`seqloom.models.transformer.interop`)
``encoder.embed_positions.weight`` (1,026 rows)             kept: learned positions, offset ``pad + 1``
``classification_heads.{name}.*`` of a head the model       from_pretrained: the head is registered
lacks                                                       (fairseq's ``load_checkpoint_heads``);
                                                            training restore: dropped, with a warning
a head of other sizes than the model's                      dropped, with a warning (model's is kept)
a head of the model missing from the checkpoint             the model's (fresh) head is kept
one embedding row more than the dictionary (``<mask>``)     last row dropped (fine-tuning on a task
                                                            whose dictionary has no ``<mask>``)
=========================================================  ============================================

The vocabulary: fairseq's denoising / sentence_prediction tasks append ``<mask>`` to ``dict.txt`` when
loading, so 4 specials + ``dict.txt``'s lines + ``<mask>`` = the embedding rows (50,265 for the released
``bart.base``/``bart.large``: 4 + 50,260 + 1; tests/models/test_bart_model.py builds that layout).
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from seqloom import registry
from seqloom.models.bart.builder import build_model
from seqloom.models.bart.config import BARTConfig, bart_large
from seqloom.models.bart.model import BARTModel, ClassificationHead
from seqloom.models.transformer.builder import Vocabulary
from seqloom.models.transformer.interop import _coerce, _is_optional, fairseq_model_args, upgrade_state_dict

logger = logging.getLogger(__name__)

HEADS = "classification_heads."
EMBEDDING_KEYS = (
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
    "encoder.output_projection.weight",
    "decoder.output_projection.weight",
)


def config_from_fairseq_args(args: Mapping[str, Any]) -> BARTConfig:
    """A :class:`BARTConfig` from fairseq's flat model options over the ``arch`` preset (``bart_large`` if unnamed)."""
    arch = str(args.get("arch") or args.get("_name") or "bart_large")
    if arch in registry.ARCHITECTURES and registry.ARCHITECTURES.get(arch).model == "bart":
        base = registry.ARCHITECTURES.get(arch).preset()
    elif arch == "bart" or "bart" in arch:
        base = bart_large()
    else:
        raise ValueError(f"checkpoint holds a {arch!r} model, not BART (load it with its own family's loader)")
    hints = typing.get_type_hints(BARTConfig)
    updates: dict[str, Any] = {}
    for f in dataclasses.fields(BARTConfig):
        if f.name in args:
            value = _coerce(args[f.name], hints[f.name])
            if value is not None or _is_optional(hints[f.name]):
                updates[f.name] = value
    return dataclasses.replace(base, **updates)


def config_from_checkpoint(state: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> BARTConfig:
    """The resolved model config of a loaded fairseq BART checkpoint dict; ``overrides`` (``--model-overrides``)
    replace the checkpoint's options by name."""
    cfg = config_from_fairseq_args({**fairseq_model_args(state), **(overrides or {})}).resolved()
    assert isinstance(cfg, BARTConfig)
    return cfg


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


def adapt_heads_and_vocab(model: BARTModel, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """fairseq's ``BARTModel.upgrade_state_dict_named`` for ``model`` (heads and ``<mask>`` row); see the table."""
    sd = upgrade_state_dict(sd, model.cfg)
    for name, (classes, inner) in checkpoint_heads(sd).items():
        head = model.classification_heads[name] if name in model.classification_heads else None
        sizes = (head.out_proj.out_features, head.dense.out_features) if isinstance(head, ClassificationHead) else None
        if sizes != (classes, inner):
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


def check_vocab_size(sd: Mapping[str, Tensor], size: int, *, source: str) -> None:
    """A clear error when the dictionary (with ``<mask>``) and the checkpoint's embedding table disagree."""
    table = sd.get("encoder.embed_tokens.weight")
    if table is not None and table.shape[0] not in (size, size + 1):
        raise ValueError(
            f"{source}: encoder.embed_tokens.weight has {table.shape[0]} rows but the dictionary has {size} "
            "symbols (with <mask>); load the dict.txt the model was trained with (data_name_or_path=DIR)"
        )


def model_from_state(state: Mapping[str, Any], dictionary: Vocabulary, *, source: str,
                     load_checkpoint_heads: bool = True, overrides: Mapping[str, Any] | None = None
                     ) -> BARTModel:  # fmt: skip
    """The BART model of a loaded checkpoint dict, weights loaded strictly.

    ``load_checkpoint_heads`` registers the checkpoint's classification heads first (fairseq's hub does).
    """
    cfg = config_from_checkpoint(state, overrides)
    if not isinstance(state.get("model"), Mapping):
        raise ValueError(f"checkpoint {source}: has no 'model' state dict (is it an optimizer-only file?)")
    sd = dict(state["model"])
    check_vocab_size(sd, len(dictionary), source=source)
    model = build_model(cfg, dictionary, dictionary)
    if load_checkpoint_heads:
        for name, (classes, inner) in checkpoint_heads(sd).items():
            model.register_classification_head(name, classes, inner)
    model.load_state_dict(sd, strict=True)
    return model


def _load_for_task(state: Mapping[str, Any], src_dict: Vocabulary, tgt_dict: Vocabulary | None, *, source: str,
                   overrides: Mapping[str, Any] | None = None) -> BARTModel:  # fmt: skip
    """``registry.CHECKPOINT_LOADERS``' signature: BART has one dictionary, the source's."""
    return model_from_state(state, src_dict, source=source, overrides=overrides)


registry.CHECKPOINT_LOADERS.add("bart", _load_for_task)
