"""Loading pieces shared by the hubs: the steps of ``from_pretrained`` (:func:`read_checkpoints`, then
:func:`assemble_hub`) and the options they read.

Options come from the checkpoint's config groups (see :func:`checkpoint_groups`) and then the keywords of
``from_pretrained``, with fairseq's option names. Both stay ``Mapping[str, Any]`` in the hubs: their values are
whatever an unpickled checkpoint or a caller's keywords hold, checked where an option is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from seqloom.checkpoint.io import load_checkpoint
from seqloom.config.options import bounds_problem, value_mismatch
from seqloom.data.dictionary import Dictionary
from seqloom.generation.config import GenerationConfig
from seqloom.hub import files
from seqloom.hub.base import GeneratorHubInterface, HubBatching
from seqloom.hub.codecs import build_codec, codec_option_names, codec_spec
from seqloom.modules.int8 import check_method, quantize_model
from seqloom.modules.packed_linear import pack_linears, packed_unavailable
from seqloom.tokenizers.tokenizer import Tokenizer

GENERATION_OPTIONS = tuple(f.name for f in dataclasses.fields(GenerationConfig))
BATCHING_OPTIONS = ("max_tokens", "batch_size")
GROUPS = ("model", "task", "dataset", "generation", "tokenizer", "bpe")


def checkpoint_groups(state: Mapping[str, Any]) -> dict[str, Any]:
    """fairseq's config groups of a loaded checkpoint as plain dicts (an old flat ``args`` fills them all)."""
    args = state.get("args")
    if args is not None:
        flat = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args)
        groups: dict[str, dict[str, Any] | None] = {g: flat for g in ("model", "task", "dataset", "generation")}
        groups["tokenizer"] = {**flat, "_name": flat["tokenizer"]} if flat.get("tokenizer") else None
        groups["bpe"] = {**flat, "_name": flat["bpe"]} if flat.get("bpe") else None
        return groups
    cfg = state.get("cfg") or {}
    groups = {}
    for g in GROUPS:
        value = cfg.get(g) if isinstance(cfg, Mapping) else None
        groups[g] = dict(vars(value)) if isinstance(value, argparse.Namespace) else value
    return groups


@dataclass(frozen=True)
class LoadedCheckpoints:
    """The checkpoints ``from_pretrained`` read from a model directory."""

    model_dir: Path
    """The resolved model directory."""
    paths: list[Path]
    """The checkpoint files, in the order of ``checkpoint_file`` ('a.pt:b.pt' names an ensemble)."""
    states: list[dict[str, Any]]
    """Their loaded contents, one a path (unpickled data: anything fairseq saved)."""
    groups: dict[str, Any]
    """The first checkpoint's config groups (:func:`checkpoint_groups`)."""


def read_checkpoints(
    model_name_or_path: str | os.PathLike[str], checkpoint_file: str, *, ensemble: bool = True
) -> LoadedCheckpoints:
    """The model directory and its checkpoints (only the first one unless ``ensemble``), loaded safely."""
    model_dir, named = files.resolve_model_dir(model_name_or_path)
    paths = files.checkpoint_paths(model_dir, named or checkpoint_file)
    if not ensemble:
        paths = paths[:1]
    states = [load_checkpoint(p) for p in paths]
    return LoadedCheckpoints(model_dir, paths, states, checkpoint_groups(states[0]))


def pick_options(group: object, names: Sequence[str], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Values of ``names`` from a checkpoint group (interpolations skipped), then from ``kwargs``."""
    values: dict[str, Any] = {}
    if isinstance(group, Mapping):
        values = {n: group[n] for n in names if n in group and not str(group[n]).startswith("${")}
    values.update({n: kwargs[n] for n in names if n in kwargs})
    return values


def check_keywords(kwargs: Mapping[str, Any], *, extra: Iterable[str], caller: str, accepts: str) -> None:
    """Raises ``TypeError`` naming the keywords that are neither codec, batching, generation nor ``extra``."""
    known = {"tokenizer", "bpe", *extra, *BATCHING_OPTIONS, *GENERATION_OPTIONS}
    known |= codec_option_names("tokenizer") | codec_option_names("bpe")
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"{caller} got unknown keyword(s) {', '.join(unknown)}; it accepts {accepts}")


def dictionary_file(model_dir: Path, data_name_or_path: str) -> Path:
    """The model's ``dict.txt`` (``data_name_or_path`` starting with '.': inside the model directory)."""
    path = files.resolve_data_dir(model_dir, data_name_or_path) / "dict.txt"
    if not path.is_file():
        raise FileNotFoundError(f"dictionary {path}: no such file; pass data_name_or_path=DIR")
    return path


def build_codecs(
    model_dir: Path, groups: Mapping[str, Any], kwargs: Mapping[str, Any]
) -> tuple[Tokenizer | None, Tokenizer | None]:
    """The tokenizer and BPE: keywords win over the checkpoint's groups (which fairseq 0.12 fails to merge)."""
    tokenizer = codec_spec("tokenizer", kwargs.get("tokenizer", groups.get("tokenizer")), kwargs)
    bpe = codec_spec("bpe", kwargs.get("bpe", groups.get("bpe")), kwargs)
    if bpe is not None:
        bpe.options.update(files.discover_codec_files(model_dir, bpe.options))
        bpe = codec_spec("bpe", bpe.name, bpe.options)
    return build_codec("tokenizer", tokenizer), build_codec("bpe", bpe)


def check_generation_keywords(kwargs: Mapping[str, Any]) -> None:
    """Raises TypeError naming a generation keyword whose value is not of its option's type (``beam="5"``)."""
    hints = typing.get_type_hints(GenerationConfig)
    for name in sorted(set(GENERATION_OPTIONS) & set(kwargs)):
        problem = value_mismatch(kwargs[name], hints[name])
        if problem:
            raise TypeError(f"generation option {name}={kwargs[name]!r}: {problem}")
        problem = bounds_problem(GenerationConfig, name, kwargs[name])
        if problem:
            raise ValueError(f"generation option {name}={kwargs[name]!r}: {problem}")


def generation_config(groups: Mapping[str, Any], kwargs: Mapping[str, Any]) -> GenerationConfig:
    """The checkpoint's generation options, then the keywords (unset values left at their defaults)."""
    check_generation_keywords(kwargs)
    values = pick_options(groups.get("generation"), GENERATION_OPTIONS, kwargs)
    keep_none = ("replace_unk", "print_alignment")
    return GenerationConfig(**{k: v for k, v in values.items() if v is not None or k in keep_none})


def hub_batching(groups: Mapping[str, Any], kwargs: Mapping[str, Any]) -> HubBatching:
    """``max_tokens``/``batch_size`` of the checkpoint's dataset group, then the keywords."""
    # fairseq's hub batches with get_batch_iterator's default multiple of 1
    return HubBatching(**pick_options(groups.get("dataset"), BATCHING_OPTIONS, kwargs), required_batch_size_multiple=1)


H = typing.TypeVar("H", bound=GeneratorHubInterface)


def assemble_hub(
    hub_class: type[H],
    models: Sequence[nn.Module],
    loaded: LoadedCheckpoints,
    kwargs: Mapping[str, Any],
    *,
    src_dict: Dictionary,
    tgt_dict: Dictionary,
    max_positions: tuple[int | None, int | None],
) -> H:
    """A ``hub_class`` over ``models`` with the codecs, generation options and batching that ``kwargs`` and
    the checkpoint's groups give (keywords win)."""
    tokenizer, bpe = build_codecs(loaded.model_dir, loaded.groups, kwargs)
    return hub_class(
        models,
        src_dict=src_dict,
        tgt_dict=tgt_dict,
        tokenizer=tokenizer,
        bpe=bpe,
        generation=generation_config(loaded.groups, kwargs),
        batching=hub_batching(loaded.groups, kwargs),
        max_positions=max_positions,
    )


def pack_hub(hub: H, packed_weights: bool, *, quantize: str | None) -> H:
    """``from_pretrained(..., packed_weights=True)``: the hub's decoders multiply by float32 weights packed once for
    MKL (:mod:`seqloom.modules.packed_linear`; CPU only, scores differ from fairseq's in their last digits)."""
    if not packed_weights:
        return hub
    if quantize is not None:
        raise ValueError(f"packed_weights=True packs float32 weights; quantize={quantize!r} has none left: use one")
    for model in hub.models:
        param = next(model.parameters(), None)
        reason = packed_unavailable(param.device) if param is not None else None
        if reason is not None:
            raise ValueError(f"packed_weights=True: {reason.replace('add --cpu', 'load it on the CPU')}")
        decoder = getattr(model, "decoder", None)
        pack_linears(decoder if isinstance(decoder, nn.Module) else model)
    return hub


def quantize_hub(hub: H, quantize: str | None) -> H:
    """``from_pretrained(..., quantize="int8")``: the hub's models with int8 linear layers, converted in place
    (:mod:`seqloom.modules.int8`; CPU only); None: the models as loaded."""
    if quantize is None:
        return hub
    check_method(quantize)
    for model in hub.models:
        quantize_model(model, quantize)
    return hub
