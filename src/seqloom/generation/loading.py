"""Loading the models of ``--path a.pt:b.pt`` (an ensemble) for generation."""

from __future__ import annotations

import ast
import logging
import os
from typing import Any

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


def load_ensemble(path: str | None, task: Any, *, model_overrides: str = "{}") -> list[Any]:
    """The eval-mode models of ``--path``, built for the task's dictionaries with strict weight loading."""
    from seqloom.checkpoint.io import load_checkpoint
    from seqloom.models.loading import model_from_state  # whichever family the checkpoint holds (e.g. BART)

    overrides = parse_model_overrides(model_overrides)
    models = []
    for p in split_paths(path):
        logger.info("loading model(s) from %s", p)
        state = load_checkpoint(p)
        model = model_from_state(state, task.source_dictionary, task.target_dictionary, source=p, overrides=overrides)
        models.append(model.eval())
    return models
