"""fairseq checkpoints <-> seqloom's ``transformer_lm``: the config from a checkpoint, key upgrades, loading.

Checkpoints of fairseq 0.10-0.12 (and seqloom's own) load without any key mapping: the module names are
fairseq's (``decoder.embed_tokens``, ``decoder.project_in_dim``, ``decoder.layers.N.*``,
``decoder.project_out_dim``, ``decoder.output_projection`` or ``decoder.adaptive_softmax.{head,tail}``).
Older checkpoints get the upgrades fairseq applies when loading:

==============================================  ==================================================
old                                             new
==============================================  ==================================================
``*.in_proj_weight`` / ``*.in_proj_bias``        ``q_proj`` / ``k_proj`` / ``v_proj`` (transformer's table)
``decoder.layers.N.layer_norms.K``               named layer norms (transformer's table)
``decoder.embed_out``                            ``decoder.output_projection.weight``
(tied, no projection key)                        ``decoder.output_projection.weight`` = embeddings
``decoder.embed_positions._float_tensor``        dropped (sinusoidal positions are computed)
args ``no_tie_adaptive_proj`` / ``decoder_final_norm``  ``tie_adaptive_proj`` / ``no_decoder_final_norm``
==============================================  ==================================================

The model config is fairseq's flat model options (``args``, or hydra's ``cfg["model"]``) laid over the
``arch`` preset; ``max_target_positions`` left unset means ``tokens_per_sample``, as in fairseq.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from seqloom import registry
from seqloom.checkpoint.io import load_checkpoint
from seqloom.models.transformer.interop import _rename_layer_norms, _split_fused_projections, fairseq_model_args
from seqloom.models.transformer_lm.builder import Vocabulary, build_model
from seqloom.models.transformer_lm.config import TransformerLMConfig
from seqloom.models.transformer_lm.model import TransformerLM
from seqloom.models.transformer_lm.presets import base_lm
from seqloom.modules.skip_init import build_and_load


def _preset(arch: str) -> TransformerLMConfig:
    if arch in registry.ARCHITECTURES and registry.ARCHITECTURES.get(arch).model == "transformer_lm":
        return registry.ARCHITECTURES.get(arch).preset()
    if str(arch).startswith("transformer_lm"):
        return base_lm()  # a preset seqloom does not name: fairseq's args carry every value anyway
    raise ValueError(f"checkpoint holds a {arch!r} model, not fairseq's decoder-only 'transformer_lm'")


def _coerce(value: object, tp: object) -> object:
    """Values as fairseq stores them: ``${...}`` interpolations mean "derived", lists of cutoffs as text."""
    if isinstance(value, str) and value.startswith("${"):
        return None
    if isinstance(value, (list, tuple)) and str in typing.get_args(tp):
        return ",".join(str(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool) and _strip(tp) is float:
        return float(value)
    return value


def _strip(tp: object) -> object:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 else tp


def config_from_fairseq_args(args: Mapping[str, Any]) -> TransformerLMConfig:
    """A :class:`TransformerLMConfig` from fairseq's flat model options, over the ``arch`` preset."""
    values = dict(args)
    if "no_tie_adaptive_proj" in values:  # very old adaptive models, as fairseq's base_lm_architecture reads them
        values["no_decoder_final_norm"] = True
        if values["no_tie_adaptive_proj"] is False:
            values["tie_adaptive_proj"] = True
    if "decoder_final_norm" in values:
        values["no_decoder_final_norm"] = not values["decoder_final_norm"]
    base = _preset(str(values.get("arch") or values.get("_name") or "transformer_lm"))
    hints = typing.get_type_hints(TransformerLMConfig)
    updates: dict[str, Any] = {}
    for f in dataclasses.fields(TransformerLMConfig):
        if f.name in values:
            value = _coerce(values[f.name], hints[f.name])
            if value is not None or type(None) in typing.get_args(hints[f.name]):
                updates[f.name] = value
    return dataclasses.replace(base, **updates)


def config_from_checkpoint(state: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> TransformerLMConfig:
    """The resolved model config of a loaded checkpoint dict (fairseq's or seqloom's).

    ``overrides`` (``--model-overrides``) replace the checkpoint's options by name.
    """
    return config_from_fairseq_args({**fairseq_model_args(state), **(overrides or {})}).resolved()


def upgrade_state_dict(state_dict: Mapping[str, Tensor], cfg: TransformerLMConfig) -> dict[str, Tensor]:
    """Applies this module's key upgrades; returns a new dict."""
    sd = dict(state_dict)
    _split_fused_projections(sd)
    _rename_layer_norms(sd)
    if cfg.adaptive_softmax_cutoff is None and "decoder.output_projection.weight" not in sd:
        if cfg.share_decoder_input_output_embed and "decoder.embed_tokens.weight" in sd:
            sd["decoder.output_projection.weight"] = sd["decoder.embed_tokens.weight"]
        elif "decoder.embed_out" in sd:
            sd["decoder.output_projection.weight"] = sd.pop("decoder.embed_out")
    sd.pop("decoder.embed_out", None)
    for key in [k for k in sd if k.startswith("decoder.embed_positions.")]:
        if key.endswith("_float_tensor") or not cfg.decoder_learned_pos:
            del sd[key]
    return sd


def check_vocab_size(sd: Mapping[str, Tensor], size: int, *, source: str) -> None:
    """Raises a clear error when the dictionary and the checkpoint's embedding table disagree."""
    table = sd.get("decoder.embed_tokens.weight")
    if table is not None and table.shape[0] != size:
        raise ValueError(
            f"{source}: decoder.embed_tokens.weight has {table.shape[0]} rows but the dictionary has {size} "
            "symbols; load the dictionary the model was trained with (the data folder's dict.txt)"
        )


def model_from_state(
    state: Mapping[str, Any],
    dictionary: Vocabulary,
    output_dictionary: Vocabulary | None = None,
    *,
    source: str,
    overrides: Mapping[str, Any] | None = None,
    random_init: bool = False,
) -> TransformerLM:
    """Builds the language model a loaded checkpoint dict describes and loads its weights strictly (the build
    skips the random initialisation unless ``random_init``: :func:`seqloom.modules.skip_init.build_and_load`)."""
    cfg = config_from_checkpoint(state, overrides)
    sd = upgrade_state_dict(state["model"], cfg)
    check_vocab_size(sd, len(dictionary), source=source)
    return build_and_load(lambda: build_model(cfg, dictionary, output_dictionary), sd, random_init=random_init)


def load_fairseq_lm(
    path: str | os.PathLike[str], dictionary: Vocabulary, output_dictionary: Vocabulary | None = None
) -> TransformerLM:
    """Reads a fairseq (or seqloom) ``transformer_lm`` checkpoint file into an eval-mode model."""
    state = load_checkpoint(path)
    return model_from_state(state, dictionary, output_dictionary, source=str(path)).eval()


registry.CHECKPOINT_LOADERS.add("transformer_lm", model_from_state)
