"""fairseq checkpoints <-> seqloom's transformer: the config from a checkpoint's args, and key upgrades.

A checkpoint written by fairseq 0.10-0.12 loads with no key mapping at all (the module names are
fairseq's). Older checkpoints need the upgrades fairseq itself applies when loading, listed here:

==========================================================  ==========================================
old key                                                     new key
==========================================================  ==========================================
``*.in_proj_weight`` / ``*.in_proj_bias`` (fused q;k;v)     ``*.q_proj.*``, ``*.k_proj.*``, ``*.v_proj.*``
``encoder.layers.N.layer_norms.0`` / ``.1``                 ``self_attn_layer_norm`` / ``final_layer_norm``
``decoder.layers.N.layer_norms.0`` / ``.1`` / ``.2``        ``self_attn_layer_norm`` / ``encoder_attn_layer_norm``
                                                            / ``final_layer_norm``
``decoder.embed_out`` (untied output matrix)                ``decoder.output_projection.weight``
(tied, no projection key)                                   ``decoder.output_projection.weight`` = embeddings
``*.embed_positions._float_tensor``, ``*.embed_positions    dropped (sinusoidal positions are computed)
.weights``
(no ``encoder.version`` / ``decoder.version``)              added as 1, as fairseq reads such files
==========================================================  ==========================================
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from seqloom import registry
from seqloom.checkpoint.io import load_checkpoint
from seqloom.models.transformer.builder import Vocabulary, build_model
from seqloom.models.transformer.config import TransformerConfig
from seqloom.models.transformer.model import TransformerModel
from seqloom.modules.skip_init import build_and_load

# hydra-era configs nest these groups: ``{"encoder": {"embed_dim": 512}}`` is ``encoder_embed_dim``
_NESTED_GROUPS = ("encoder", "decoder", "quant_noise")


def fairseq_model_args(state: Mapping[str, Any]) -> dict[str, Any]:
    """The flat model options of a fairseq checkpoint: ``args`` (old) or ``cfg["model"]`` (hydra era)."""
    args = state.get("args")
    if args is None:
        cfg = state.get("cfg")
        args = cfg.get("model") if isinstance(cfg, Mapping) else None
    if args is None:
        raise ValueError("checkpoint has neither 'args' nor 'cfg'['model']: not a fairseq model checkpoint")
    values = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args)
    for group in _NESTED_GROUPS:
        nested = values.pop(group, None)
        if isinstance(nested, Mapping):
            for key, value in nested.items():
                values.setdefault(f"{group}_{key}", value)
    return values


def config_from_fairseq_args(args: Mapping[str, Any]) -> TransformerConfig:
    """A :class:`TransformerConfig` from fairseq's flat options, starting from the ``arch`` preset.

    Options the args lack keep the preset's values, as fairseq's arch functions fill them in.
    """
    arch = args.get("arch") or args.get("_name") or "transformer"
    if arch in registry.ARCHITECTURES and registry.ARCHITECTURES.get(arch).model == "transformer":
        base = registry.ARCHITECTURES.get(arch).preset()
    elif arch == "transformer" or str(arch).startswith("transformer_") and "lm" not in str(arch):
        base = TransformerConfig()
    else:
        raise ValueError(f"checkpoint holds a {arch!r} model, not fairseq's encoder-decoder 'transformer'")
    hints = typing.get_type_hints(TransformerConfig)
    updates: dict[str, Any] = {}
    for f in dataclasses.fields(TransformerConfig):
        if f.name in args:
            value = _coerce(args[f.name], hints[f.name])
            if value is not None or _is_optional(hints[f.name]):
                updates[f.name] = value
    return dataclasses.replace(base, **updates)


def _is_optional(tp: object) -> bool:
    return type(None) in typing.get_args(tp)


def _coerce(value: object, tp: object) -> object:
    """Fixes up values as fairseq stores them: interpolations (``${...}``) mean "derived", lists as text."""
    if isinstance(value, str) and value.startswith("${"):
        return None
    if isinstance(value, (list, tuple)) and str in typing.get_args(tp):
        return ",".join(str(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool) and tp is float:
        return float(value)
    return value


def config_from_checkpoint(state: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> TransformerConfig:
    """The (resolved) model config of a loaded fairseq checkpoint dict; ``overrides`` (``--model-overrides``)
    replace the checkpoint's options by name."""
    return config_from_fairseq_args({**fairseq_model_args(state), **(overrides or {})}).resolved()


def fairseq_args_namespace(cfg: TransformerConfig, *, arch: str = "transformer") -> argparse.Namespace:
    """The model part of the ``args`` Namespace fairseq expects in a checkpoint (resolved, fairseq's names).

    fairseq rebuilds the model from these with ``base_architecture``; every derived size is explicit so
    that it gets exactly this model.
    """
    values = {f.name: getattr(cfg.resolved(), f.name) for f in dataclasses.fields(TransformerConfig)}
    return argparse.Namespace(arch=arch, _name=arch, **values)


def upgrade_state_dict(state_dict: Mapping[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """Applies the key upgrades in this module's table; returns a new dict."""
    sd = dict(state_dict)
    _split_fused_projections(sd)
    _rename_layer_norms(sd)
    _upgrade_output_projection(sd, cfg.resolved())
    _add_versions(sd, cfg.resolved())
    for key in [k for k in sd if k.endswith(("embed_positions._float_tensor", "embed_positions.weights"))]:
        learned = cfg.encoder_learned_pos if key.startswith("encoder.") else cfg.decoder_learned_pos
        if key.endswith("_float_tensor") or not learned:
            del sd[key]
    return sd


def _add_versions(sd: dict[str, Tensor], cfg: TransformerConfig) -> None:
    """Checkpoints older than fairseq 0.6 have no ``*.version``: fairseq reads them as version 1."""
    for side, pre_norm in (("encoder", cfg.encoder_normalize_before), ("decoder", cfg.decoder_normalize_before)):
        key = f"{side}.version"
        if key in sd:
            continue
        if pre_norm and f"{side}.layer_norm.weight" not in sd:
            raise NotImplementedError(
                f"checkpoint: {side} is pre-norm but predates fairseq's final layer norm ({key} is missing); "
                "such checkpoints are not supported"
            )
        sd[key] = torch.tensor([1.0])


def _split_fused_projections(sd: dict[str, Tensor]) -> None:
    for key in [k for k in sd if k.endswith("in_proj_weight") or k.endswith("in_proj_bias")]:
        prefix, kind = key[: -len("in_proj_weight")], "weight"
        if key.endswith("in_proj_bias"):
            prefix, kind = key[: -len("in_proj_bias")], "bias"
        fused = sd.pop(key)
        dim = fused.shape[0] // 3
        for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
            sd[f"{prefix}{name}.{kind}"] = fused[i * dim : (i + 1) * dim]


_LAYER_NORMS = {
    "encoder": {"0": "self_attn_layer_norm", "1": "final_layer_norm"},
    "decoder": {"0": "self_attn_layer_norm", "1": "encoder_attn_layer_norm", "2": "final_layer_norm"},
}


def _rename_layer_norms(sd: dict[str, Tensor]) -> None:
    for key in [k for k in sd if ".layer_norms." in k]:
        head, tail = key.split(".layer_norms.", 1)
        index, param = tail.split(".", 1)
        new_name = _LAYER_NORMS[head.split(".", 1)[0]].get(index)
        if new_name is not None:
            sd[f"{head}.{new_name}.{param}"] = sd.pop(key)


def _upgrade_output_projection(sd: dict[str, Tensor], cfg: TransformerConfig) -> None:
    if "decoder.output_projection.weight" in sd:
        sd.pop("decoder.embed_out", None)
        return
    if cfg.share_decoder_input_output_embed and "decoder.embed_tokens.weight" in sd:
        sd["decoder.output_projection.weight"] = sd["decoder.embed_tokens.weight"]
    elif "decoder.embed_out" in sd:
        sd["decoder.output_projection.weight"] = sd.pop("decoder.embed_out")


def check_vocab_sizes(sd: Mapping[str, Tensor], src_size: int, tgt_size: int, *, source: str = "checkpoint") -> None:
    """Raises a clear error when the dictionaries and the checkpoint's embedding tables disagree."""
    for side, key, size in (
        ("source", "encoder.embed_tokens.weight", src_size),
        ("target", "decoder.embed_tokens.weight", tgt_size),
    ):
        if key in sd and sd[key].shape[0] != size:
            raise ValueError(
                f"{source}: {key} has {sd[key].shape[0]} rows but the {side} dictionary has {size} symbols; "
                "load the dictionary the model was trained with (the data-bin folder's dict.*.txt)"
            )


class _Vocab:
    """A stand-in dictionary of a given size (pad = 1, fairseq's) when none is given."""

    def __init__(self, size: int, pad: int = 1) -> None:
        self.size, self._pad = size, pad

    def __len__(self) -> int:
        return self.size

    def pad(self) -> int:
        return self._pad

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Vocab) and other.size == self.size


def model_from_state(
    state: Mapping[str, Any],
    src_dict: Vocabulary | None = None,
    tgt_dict: Vocabulary | None = None,
    *,
    source: str = "checkpoint",
    overrides: Mapping[str, Any] | None = None,
    random_init: bool = False,
) -> TransformerModel:
    """Builds the model a loaded fairseq checkpoint dict describes and loads its weights strictly.

    The build skips the random initialisation the weights replace, unless ``random_init``
    (:func:`seqloom.modules.skip_init.build_and_load`)."""
    cfg = config_from_checkpoint(state, overrides)
    sd = upgrade_state_dict(state["model"], cfg)
    src_size = len(src_dict) if src_dict is not None else sd["encoder.embed_tokens.weight"].shape[0]
    tgt_size = len(tgt_dict) if tgt_dict is not None else sd["decoder.embed_tokens.weight"].shape[0]
    check_vocab_sizes(sd, src_size, tgt_size, source=source)
    src = src_dict if src_dict is not None else _Vocab(src_size)
    tgt = tgt_dict if tgt_dict is not None else (src if cfg.share_all_embeddings else _Vocab(tgt_size))
    return build_and_load(lambda: build_model(cfg, src, tgt), sd, random_init=random_init)


def load_fairseq_model(
    path: str | os.PathLike[str], src_dict: Vocabulary | None = None, tgt_dict: Vocabulary | None = None
) -> TransformerModel:
    """Reads a fairseq (or seqloom) transformer checkpoint file into an eval-mode model."""
    state = load_checkpoint(path)
    return model_from_state(state, src_dict, tgt_dict, source=str(path)).eval()


registry.CHECKPOINT_LOADERS.add("transformer", model_from_state)
