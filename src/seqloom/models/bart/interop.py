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
import typing
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from seqloom import registry
from seqloom.models.bart.builder import build_model
from seqloom.models.bart.config import BARTConfig, bart_large
from seqloom.models.bart.model import BARTModel
from seqloom.models.bart.upgrades import checkpoint_heads
from seqloom.models.transformer.builder import Vocabulary
from seqloom.models.transformer.interop import _coerce, _is_optional, fairseq_model_args
from seqloom.modules.skip_init import build_and_load


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


def check_vocab_size(sd: Mapping[str, Tensor], size: int, *, source: str) -> None:
    """A clear error when the dictionary (with ``<mask>``) and the checkpoint's embedding table disagree."""
    table = sd.get("encoder.embed_tokens.weight")
    if table is not None and table.shape[0] not in (size, size + 1):
        raise ValueError(
            f"{source}: encoder.embed_tokens.weight has {table.shape[0]} rows but the dictionary has {size} "
            "symbols (with <mask>); load the dict.txt the model was trained with (data_name_or_path=DIR)"
        )


def model_from_state(state: Mapping[str, Any], dictionary: Vocabulary, *, source: str,
                     load_checkpoint_heads: bool = True, overrides: Mapping[str, Any] | None = None,
                     random_init: bool = False) -> BARTModel:  # fmt: skip
    """The BART model of a loaded checkpoint dict, weights loaded strictly.

    ``load_checkpoint_heads`` registers the checkpoint's classification heads first (fairseq's hub does). The build
    skips the random initialisation unless ``random_init`` (:func:`seqloom.modules.skip_init.build_and_load`).
    """
    cfg = config_from_checkpoint(state, overrides)
    if not isinstance(state.get("model"), Mapping):
        raise ValueError(f"checkpoint {source}: has no 'model' state dict (is it an optimizer-only file?)")
    sd = dict(state["model"])
    check_vocab_size(sd, len(dictionary), source=source)
    heads = checkpoint_heads(sd) if load_checkpoint_heads else {}

    def build() -> BARTModel:
        model = build_model(cfg, dictionary, dictionary)
        for name, (classes, inner) in heads.items():
            model.register_classification_head(name, classes, inner)
        return model

    return build_and_load(build, sd, random_init=random_init)


def _load_for_task(state: Mapping[str, Any], src_dict: Vocabulary, tgt_dict: Vocabulary | None, *, source: str,
                   overrides: Mapping[str, Any] | None = None, random_init: bool = False) -> BARTModel:  # fmt: skip
    """``registry.CHECKPOINT_LOADERS``' signature: BART has one dictionary, the source's."""
    return model_from_state(state, src_dict, source=source, overrides=overrides, random_init=random_init)


registry.CHECKPOINT_LOADERS.add("bart", _load_for_task)
