"""Building whichever model a checkpoint holds: the family is read from its ``arch`` (or hydra ``_name``).

``model_from_state(state, src_dict, tgt_dict, source=...)`` hands the checkpoint to the loader its family's
interop registered (``registry.CHECKPOINT_LOADERS``), which builds the model and loads its weights strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from seqloom import registry
from seqloom.components import import_builtins
from seqloom.models.transformer.builder import Vocabulary
from seqloom.models.transformer.interop import fairseq_model_args
from seqloom.modules.int8 import float_placeholders, is_quantized_state, load_quantized


def model_family(state: Mapping[str, Any]) -> str:
    """``transformer_lm`` or ``transformer``: the registered model of the checkpoint's architecture."""
    import_builtins()
    args = fairseq_model_args(state)
    arch = str(args.get("arch") or args.get("_name") or "transformer")
    if arch in registry.ARCHITECTURES:
        return registry.ARCHITECTURES.get(arch).model
    if arch in registry.MODELS:  # an export's config names the model itself (e.g. 'bart')
        return arch
    return "transformer_lm" if arch.startswith("transformer_lm") else "transformer"


def model_from_state(
    state: Mapping[str, Any],
    src_dict: Vocabulary,
    tgt_dict: Vocabulary | None,
    *,
    source: str = "checkpoint",
    overrides: Mapping[str, Any] | None = None,
    random_init: bool = False,
) -> nn.Module:
    """The model of a loaded checkpoint dict, for the task's dictionaries, with its weights loaded strictly.

    An int8 state dict (a ``seqloom export --quantize int8``) gives the int8 model (:mod:`seqloom.modules.int8`).
    The build skips the random initialisation that the weights replace unless ``random_init``, which draws it as
    fairseq does so that random numbers drawn after loading (sampling) are fairseq's for a given seed."""
    sd = state.get("model")
    if isinstance(sd, Mapping) and is_quantized_state(sd):
        model = model_from_state({**state, "model": float_placeholders(sd)}, src_dict, tgt_dict, source=source,
                                 overrides=overrides, random_init=random_init)  # fmt: skip
        return load_quantized(model, sd)
    family = model_family(state)
    if family not in registry.CHECKPOINT_LOADERS:
        known = ", ".join(registry.CHECKPOINT_LOADERS.names())
        raise ValueError(f"{source}: cannot load a {family!r} model here (known: {known})")
    load = registry.CHECKPOINT_LOADERS.get(family)
    return load(state, src_dict, tgt_dict, source=source, overrides=overrides, random_init=random_init)
