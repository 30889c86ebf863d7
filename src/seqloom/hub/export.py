"""A self-contained, pickle-free model directory: ``model.safetensors``, ``config.json``, dicts, BPE files.

``config.json`` holds fairseq-style config groups (``model``, ``task``, ``dataset``, ``generation``,
``tokenizer``, ``bpe``) that ``from_pretrained`` reads exactly as it reads a checkpoint's ``cfg``; codec
file options name files in the directory. Weights that are tied (one tensor under several names, e.g.
``decoder.output_projection.weight`` and ``decoder.embed_tokens.weight``) are stored once; ``tied_weights``
maps each extra name to the stored one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from seqloom import __version__
from seqloom.checkpoint.io import CheckpointError
from seqloom.hub.codecs import CodecSpec
from seqloom.hub.files import FILE_OPTIONS
from seqloom.hub.mbart_translation import MBartTranslationHub
from seqloom.hub.spec import PretrainedSpec
from seqloom.hub.translation import TranslationHub
from seqloom.models.bart.model import BARTModel
from seqloom.modules.int8 import is_quantized_state
from seqloom.paths import plain_file_mode, unwritable_reason

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "seqloom-export"
FORMAT_VERSION = 1


def is_export(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a ``seqloom export`` (a config.json of this format)."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def split_tied(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Keeps one name per distinct tensor (first in order); returns the tensors and ``{alias: kept name}``."""
    kept: dict[str, Tensor] = {}
    tied: dict[str, str] = {}
    owners: dict[tuple[int, tuple[int, ...], tuple[int, ...]], str] = {}
    for name, tensor in state_dict.items():
        key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))
        if tensor.numel() and key in owners:
            tied[name] = owners[key]
            continue
        owners[key] = name
        kept[name] = tensor.detach().contiguous()
    return kept, tied


def _codec_group(spec: CodecSpec | None, out_dir: Path, copied: dict[str, str]) -> dict[str, Any] | None:
    """A codec's config group with its files copied into ``out_dir`` (options then name the copies)."""
    if spec is None:
        return None
    group: dict[str, Any] = {"_name": spec.name}
    for option, value in spec.options.items():
        if option in FILE_OPTIONS and value:
            source = Path(str(value))
            if str(source) not in copied:
                name = source.name if source.name not in copied.values() else f"{option}.{source.name}"
                shutil.copyfile(source, out_dir / name)
                copied[str(source)] = name
            value = copied[str(source)]
        group[option] = value
    return group


MBART_TASK = "translation_from_pretrained_bart"


def _model_group(hub: TranslationHub, spec: PretrainedSpec) -> dict[str, Any]:
    """The ``model`` config group: the transformer's, or a BART-architecture model's (mBART translation,
    mBART-50-style many-to-many)."""
    if isinstance(hub.model, BARTModel):
        return {"_name": "bart", "arch": "bart", **dataclasses.asdict(hub.model.cfg)}
    if spec.model_cfg is None:
        raise ValueError(f"export does not take {type(hub.model).__name__} models")
    return {"_name": "transformer", "arch": "transformer", **dataclasses.asdict(spec.model_cfg.resolved())}


def _task_group(hub: TranslationHub) -> dict[str, Any]:
    """The ``task`` group's name and language options (many-to-many models, mBART translation)."""
    if isinstance(hub, MBartTranslationHub):
        return {"_name": MBART_TASK, "langs": hub.langs}
    languages = getattr(hub, "languages", None)
    return {"_name": "translation_multi_simple_epoch", **languages} if languages else {"_name": "translation"}


def export_config(spec: PretrainedSpec, tied: dict[str, str], out_dir: Path, model: dict[str, Any],
                  task: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The config.json content for ``spec`` (copies the dictionaries and codec files into ``out_dir``), with the
    ``model`` group and the ``task`` group's name and language options."""
    dicts = {"source": f"dict.{spec.source_lang}.txt", "target": f"dict.{spec.target_lang}.txt"}
    shutil.copyfile(spec.src_dict_path, out_dir / dicts["source"])
    if dicts["target"] != dicts["source"]:
        shutil.copyfile(spec.tgt_dict_path, out_dir / dicts["target"])
    copied: dict[str, str] = {}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seqloom_version": __version__,
        "weights": WEIGHTS_FILE,
        "tied_weights": tied,
        "dictionaries": dicts,
        "model": model,
        "task": {
            **task,
            "source_lang": spec.source_lang,
            "target_lang": spec.target_lang,
            "left_pad_source": spec.left_pad_source,
            "max_source_positions": spec.max_source_positions,
            "max_target_positions": spec.max_target_positions,
        },
        "dataset": dataclasses.asdict(spec.batching),
        "generation": dataclasses.asdict(spec.generation),
        "tokenizer": _codec_group(spec.tokenizer, out_dir, copied),
        "bpe": _codec_group(spec.bpe, out_dir, copied),
    }


def write_export(hub: TranslationHub, out_dir: str | Path) -> Path:
    """Writes ``hub`` (one model, loaded by ``from_pretrained``) as a self-contained directory."""
    spec = getattr(hub, "spec", None)
    if spec is None:
        raise ValueError(
            "export takes translation models loaded by from_pretrained (which records the files the model needs)"
        )
    if len(hub.models) != 1:
        raise ValueError(f"export writes one model; this hub holds an ensemble of {len(hub.models)}")
    model, task = _model_group(hub, spec), _task_group(hub)  # before writing anything
    out = Path(out_dir)
    _check_destination(out)
    # written into a temp folder beside ``out`` and renamed into place: an export is whole or absent
    tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.mkdir()
        tensors, tied = split_tied(hub.model.state_dict())
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        (tmp / WEIGHTS_FILE).chmod(plain_file_mode())  # safetensors creates it 0600; the other files follow the umask
        config = export_config(spec, tied, tmp, model, task)
        if is_quantized_state(tensors):
            config["quantize"] = "int8"  # for people reading the file: loading finds the int8 tensors by their scales
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        _move_into_place(tmp, out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise ValueError(f"--out {out}: the export could not be written ({unwritable_reason(out, err)})") from None
        raise
    return out


def _check_destination(out: Path) -> None:
    """Refuses an ``--out`` that is a file, below a file, or a folder of other files (an earlier export in it
    is replaced); creates its parent folders."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give the path of a folder to create (or of an earlier export)")
    if out.is_dir() and any(out.iterdir()) and not is_export(out):
        raise ValueError(
            f"--out {out} is a folder holding other files (not an earlier export, which would be replaced); "
            "give a new or empty folder"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out}: the folder cannot be created ({unwritable_reason(out, err)})") from None


def _move_into_place(tmp: Path, out: Path) -> None:
    """Renames the finished ``tmp`` to ``out`` (an empty folder there is replaced, an earlier export too)."""
    if out.is_dir() and any(out.iterdir()):  # an earlier export: set it aside, move the new one in, delete it
        old = out.parent / f".{out.name}.{secrets.token_hex(4)}.old"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(tmp, out)


def read_export_files(model_dir: Path) -> tuple[dict[str, Any], Path, dict[str, Tensor]]:
    """The config groups (codec file options made absolute), the weights file and its tensors (tied names
    restored) of an export."""
    config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{model_dir / CONFIG_FILE}: export format version {version}, this seqloom reads {FORMAT_VERSION}; "
            "re-export the model with this version (seqloom export)"
        )
    weights = model_dir / config.get("weights", WEIGHTS_FILE)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no such file; the export in {model_dir} is incomplete, re-export it")
    try:
        sd: dict[str, Tensor] = load_file(str(weights))
    except SafetensorError as err:
        raise CheckpointError(
            f"{weights}: not a readable safetensors file ({err}); the export is damaged, re-export or re-copy it"
        ) from None
    for alias, name in config.get("tied_weights", {}).items():
        sd[alias] = sd[name]
    for kind in ("tokenizer", "bpe"):
        group = config.get(kind)
        for option in FILE_OPTIONS & set(group or {}):
            if group[option]:
                group[option] = str(model_dir / group[option])
    return config, weights, sd


def export_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """A checkpoint-shaped dict (``cfg`` with the ``model`` and ``task`` groups, ``model`` the state dict) for
    the weights file of an export, so that ``--path export/model.safetensors`` works where a checkpoint does;
    None for any other file."""
    file = Path(path)
    if file.suffix != ".safetensors":
        return None
    if not is_export(file.parent):
        if not file.is_file():
            return None  # the caller reports the missing file
        config_file = file.parent / CONFIG_FILE
        state = (
            "is missing" if not config_file.is_file() else "is not the config of a seqloom export (or not valid JSON)"
        )
        raise CheckpointError(
            f"{file}: a .safetensors model is read with the config.json that seqloom export writes beside it, and "
            f"{config_file} {state}; pass a fairseq/seqloom checkpoint (.pt) or the weights file of an export folder"
        )
    config, weights, sd = read_export_files(file.parent)
    if weights.resolve() != file.resolve():
        return None
    return {"cfg": {"model": config["model"], "task": config["task"]}, "model": sd}
