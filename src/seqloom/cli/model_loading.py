"""Loading the models of ``--path a.pt:b.pt`` (an ensemble) for generation."""

from __future__ import annotations

import ast
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seqloom.data.dictionary import Dictionary

logger = logging.getLogger(__name__)


def split_paths(path: str | None) -> list[str]:
    """``--path`` as a list: colon separated (fairseq's ensemble syntax); errors name the flag."""
    if not path:
        raise ValueError(
            "--path is required: the checkpoint file(s) to generate with, e.g. --path checkpoints/checkpoint_best.pt"
        )
    paths = [p for p in path.split(os.pathsep) if p]
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"--path {p}: no such checkpoint file")
    return paths


def parse_model_overrides(text: str | None) -> dict[str, Any]:
    """``--model-overrides``: a Python dict literal of model options that replace the checkpoint's by name."""
    try:
        value = ast.literal_eval(text or "{}")
    except (ValueError, SyntaxError):
        raise ValueError(f"--model-overrides {text!r}: expected a Python dict such as \"{{'dropout': 0.0}}\"") from None
    if not isinstance(value, dict):
        raise ValueError(f"--model-overrides {text!r}: expected a dict")
    return value


def load_model_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint dict at ``path``: a fairseq/seqloom checkpoint, or the ``model.safetensors`` of a
    ``seqloom export`` (its config.json gives the model and task groups)."""
    from seqloom.checkpoint.io import load_checkpoint
    from seqloom.hub.export import export_checkpoint

    return export_checkpoint(path) or load_checkpoint(path)


def export_defaults(argv: Sequence[str], *, text: bool) -> tuple[str, dict[str, Any]] | None:
    """When ``--path`` names the weights file of a ``seqloom export``: the task options its config.json
    records (task, languages, positions) as the command's defaults, DATA defaulting to the export's folder
    (which holds the dictionaries), and with ``text`` (interactive: raw text in and out) its tokenizer and BPE
    too. Flags and ``--config`` still win. None for other paths."""
    from seqloom.hub.export import CONFIG_FILE, is_export

    path = next((v for flag, v in zip(argv, argv[1:]) if flag == "--path"), None)
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--path=")), path)
    if not path:
        return None
    folder = Path(path.split(":")[0]).parent  # no checks: the command reports a missing file itself
    if not is_export(folder):
        return None
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    values: dict[str, Any] = {"data": str(folder)}
    sections = [config.get("task") or {}]
    if text:
        sections += [config.get("tokenizer") or {}, config.get("bpe") or {}]
    for section, selector in zip(sections, ("task", "tokenizer", "bpe")):
        for key, value in section.items():
            if key == "_name":
                values[selector] = value
            elif selector != "task" and isinstance(value, str) and (folder / value).is_file():
                values[key] = str(folder / value)  # a codes/model/vocabulary file shipped in the export
            else:
                values[key] = value
    return f"{folder / CONFIG_FILE} (the export of --path)", values


def load_ensemble(path: str | None, task: Any, *, model_overrides: str = "{}", random_init: bool = False) -> list[Any]:
    """The eval-mode models of ``--path``, built for the task's dictionaries with strict weight loading.

    ``random_init``: draw the initial weights the checkpoint replaces, as fairseq does, for commands that draw
    random numbers after loading (``--sampling``, ``--retain-dropout``: the same --seed gives fairseq's samples)."""
    from seqloom.models.loading import model_from_state  # whichever family the checkpoint holds (e.g. BART)

    overrides = parse_model_overrides(model_overrides)
    models = []
    for p in split_paths(path):
        logger.info("loading model(s) from %s", p)
        state = load_model_checkpoint(p)
        model = model_from_state(state, task.source_dictionary, task.target_dictionary, source=p, overrides=overrides,
                                 random_init=random_init)  # fmt: skip
        models.append(model.eval())
    return models


def load_language_model(path: str, tgt_dict: Dictionary, *, model_overrides: str = "{}",
                        random_init: bool = False) -> Any:  # fmt: skip
    """The eval-mode language model of ``--lm-path`` over the target dictionary (for shallow fusion);
    ``random_init`` as :func:`load_ensemble`'s."""
    from seqloom.checkpoint.io import load_checkpoint
    from seqloom.models.loading import model_family, model_from_state

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--lm-path {path}: no such checkpoint file")
    logger.info("loading the language model for fusion from %s", path)
    state = load_checkpoint(path)
    family = model_family(state)
    if family != "transformer_lm":
        raise ValueError(f"--lm-path {path}: holds a {family!r} model; shallow fusion needs a language model")
    embeddings = state["model"].get("decoder.embed_tokens.weight")
    if embeddings is not None and embeddings.size(0) != len(tgt_dict):
        raise ValueError(
            f"--lm-path {path}: the language model has {embeddings.size(0)} symbols but the target dictionary has "
            f"{len(tgt_dict)}; fusion needs a language model trained over the target dictionary"
        )
    overrides = parse_model_overrides(model_overrides)
    return model_from_state(state, tgt_dict, tgt_dict, source=path, overrides=overrides, random_init=random_init).eval()
