"""Data folders of the monolingual tasks (``language_modeling``, ``denoising``), as ``preprocess --only-source``
writes them: ``dict.txt`` and ``{split}.bin/.idx`` (``split1``, ``split2``... are further shards read with
``combine``). ``DATA`` may list several folders separated by ``:``; epoch ``e`` reads folder ``(e - 1) % n``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from seqloom.data import formats
from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import ConcatTokens, TokenDataset
from seqloom.tasks import base


def data_paths(data: str | None) -> list[str]:
    """The ``:``-separated folders of ``DATA``, each checked to exist."""
    return base.data_paths(data, task="language_modeling", example="data-bin/lm")


def epoch_path(data: str | None, epoch: int) -> str:
    """The data folder that epoch ``epoch`` (1-based) reads."""
    paths = data_paths(data)
    return paths[(epoch - 1) % len(paths)]


def load_dictionary(data: str | None, *, task: str) -> Dictionary:
    """``dict.txt`` of the first data folder; ``task`` names the task in the error."""
    path = Path(data_paths(data)[0]) / "dict.txt"
    if not path.exists():
        raise FileNotFoundError(f"{task}: dictionary {path} not found (preprocess with --only-source)")
    return Dictionary.load(str(path))


def load_shards(
    path: str,
    split: str,
    *,
    combine: bool,
    dictionary: Dictionary | None,
    dataset_impl: str | None,
    task: str,
    subset_flags: str,
    logger: logging.Logger | None = None,
) -> TokenDataset:
    """``split`` of the folder ``path`` as one token dataset (``combine``: with ``split1``, ``split2``...).

    ``task`` and ``subset_flags`` name the task and the flags that pick splits in the error of a missing split;
    with a ``logger`` each shard read is logged.
    """
    parts, k = [], 0
    while True:
        prefix = os.path.join(path, split + (str(k) if k > 0 else ""))
        impl = dataset_impl or formats.infer_dataset_impl(prefix)
        if impl is None or not formats.data_exists(prefix, impl):
            if k > 0:
                break
            raise FileNotFoundError(
                f"{task}: split {split!r} not found: expected {prefix}.bin/.idx (check DATA and {subset_flags})"
            )
        dataset = formats.make_dataset(prefix, impl, dictionary=dictionary)
        if dataset is None:
            raise FileNotFoundError(f"{task}: cannot read {prefix} as --dataset-impl {impl} (.bin/.idx or text)")
        if logger is not None:
            logger.info("loaded %d examples from: %s", len(dataset), prefix)
        parts.append(dataset)
        if not combine:
            break
        k += 1
    return parts[0] if len(parts) == 1 else ConcatTokens(parts)
