"""Building whichever model a checkpoint holds: the family is read from its ``arch`` (or hydra ``_name``).

``model_from_state(state, src_dict, tgt_dict, source=...)`` dispatches to the family's interop
(``transformer``, ``transformer_lm`` or ``bart``; other families, e.g. ``roberta``, register a ``from_state``
with their model), which builds the model and loads its weights strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from seqloom import registry


def model_family(state: Mapping[str, Any]) -> str:
    """``transformer_lm`` or ``transformer``: the registered model of the checkpoint's architecture."""
    from seqloom.components import import_builtins
    from seqloom.models.transformer.interop import fairseq_model_args

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
    src_dict: Any,
    tgt_dict: Any,
    *,
    source: str = "checkpoint",
    overrides: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The model of a loaded checkpoint dict, for the task's dictionaries, with its weights loaded strictly."""
    family = model_family(state)
    if family == "transformer_lm":
        from seqloom.models.transformer_lm.interop import model_from_state as lm_from_state

        return lm_from_state(state, src_dict, tgt_dict, source=source, overrides=overrides)
    if family == "transformer":
        from seqloom.models.transformer.interop import model_from_state as mt_from_state

        return mt_from_state(state, src_dict, tgt_dict, source=source, overrides=overrides)
    if family == "bart":
        from seqloom.models.bart.interop import model_from_state as bart_from_state

        return bart_from_state(state, src_dict, source=source, overrides=overrides)
    load = getattr(registry.MODELS.get(family), "from_state", None) if family in registry.MODELS else None
    if callable(load):  # a family that registers its own loader (e.g. roberta)
        return load(state, src_dict, source=source, overrides=overrides)
    raise ValueError(f"{source}: cannot load a {family!r} model here (known: transformer, transformer_lm, bart)")
