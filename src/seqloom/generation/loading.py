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


def load_ensemble(path: str | None, task: Any, *, model_overrides: str = "{}") -> list[Any]:
    """The eval-mode models of ``--path``, built for the task's dictionaries with strict weight loading."""
    from seqloom.checkpoint.io import load_checkpoint
    from seqloom.models.loading import model_from_state  # whichever family the checkpoint holds (e.g. BART)

    overrides = ast.literal_eval(model_overrides) if model_overrides else {}
    if overrides:
        raise ValueError(
            f"--model-overrides {model_overrides}: overriding model options is not supported; drop the flag"
        )
    models = []
    for p in split_paths(path):
        logger.info("loading model(s) from %s", p)
        state = load_checkpoint(p)
        models.append(model_from_state(state, task.source_dictionary, task.target_dictionary, source=p).eval())
    return models
