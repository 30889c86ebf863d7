"""``seqloom average-checkpoints``: the element-wise mean of several checkpoints' weights (fairseq's script).

``--inputs a.pt b.pt ...`` averages those files; with ``--num-epoch-checkpoints N`` (or
``--num-update-checkpoints N``) ``--inputs`` is one folder and its last N ``checkpoint{epoch}.pt``
(``checkpoint_{epoch}_{updates}.pt``) files are averaged. The output keeps the first input's other keys.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from seqloom.checkpoint.io import CheckpointError
from seqloom.cli.parser import HelpFormatter
from seqloom.logs import setup_logging

logger = logging.getLogger("seqloom.cli.average_checkpoints")


@dataclass(kw_only=True)
class AverageConfig:
    """Options of ``seqloom average-checkpoints`` (fairseq's names)."""

    inputs: list[str]
    """input checkpoint files, or one folder with --num-epoch/update-checkpoints"""
    output: str
    """where to write the averaged checkpoint"""
    num_epoch_checkpoints: int | None = None
    """average the last N epoch checkpoints of the --inputs folder"""
    num_update_checkpoints: int | None = None
    """average the last N update checkpoints of the --inputs folder"""
    checkpoint_upper_bound: int | None = None
    """ignore checkpoints past this epoch (or update count)"""


DESCRIPTION = (
    "Average the weights of several checkpoints (fairseq's average_checkpoints.py). --inputs names the files, or "
    "one folder: its last N checkpoint<epoch>.pt files (--num-epoch-checkpoints N) or checkpoint_<epoch>_<updates>.pt "
    "files (--num-update-checkpoints N). The output keeps the first input's other entries."
)


def parse(argv: Sequence[str] | None) -> AverageConfig:
    # plain argparse: fairseq's ``--inputs`` takes several space-separated values (nargs="+")
    p = argparse.ArgumentParser(
        prog="seqloom average-checkpoints",
        usage="%(prog)s --inputs FILE [FILE ...] --output FILE [options]",
        description=textwrap.fill(DESCRIPTION, width=98),
        allow_abbrev=False,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--inputs", required=True, nargs="+", metavar="FILE", help="checkpoint files, or one folder")
    p.add_argument("--output", required=True, metavar="FILE", help="where to write the averaged checkpoint")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--num-epoch-checkpoints", type=int, metavar="N", help="average the last N epoch checkpoints of a folder"
    )
    group.add_argument(
        "--num-update-checkpoints", type=int, metavar="N", help="average the last N update checkpoints of a folder"
    )
    p.add_argument(
        "--checkpoint-upper-bound", type=int, metavar="N", help="ignore checkpoints past this epoch or update count"
    )
    ns = p.parse_args(argv)
    return AverageConfig(**vars(ns))


def last_checkpoints(folder: str, n: int, *, update_based: bool, upper_bound: int | None = None) -> list[str]:
    """The ``n`` newest epoch (or update) checkpoints in ``folder``, newest first."""
    pattern = re.compile(r"checkpoint_\d+_(\d+)\.pt" if update_based else r"checkpoint(\d+)\.pt")
    entries = []
    for name in os.listdir(folder):
        m = pattern.fullmatch(name)
        if m is not None and (upper_bound is None or int(m.group(1)) <= upper_bound):
            entries.append((int(m.group(1)), name))
    if len(entries) < n:
        kind = "update" if update_based else "epoch"
        raise ValueError(f"{folder}: found {len(entries)} {kind} checkpoint files but need at least {n}")
    return [os.path.join(folder, name) for _, name in sorted(entries, reverse=True)[:n]]


def average_checkpoints(paths: Sequence[str]) -> dict:
    """The first checkpoint's dict with ``model`` replaced by the mean of all ``model`` state dicts."""
    from seqloom.checkpoint.io import load_checkpoint

    first: dict | None = None
    sums: dict[str, torch.Tensor] = {}
    expected: int | None = None  # the first model's size bounds what the others may declare
    for path in paths:
        state = load_checkpoint(path, expected_params=expected)
        params = state["model"]
        if expected is None:
            expected = sum(v.numel() for v in params.values() if isinstance(v, torch.Tensor))
        if first is None:
            first = state
            keys = list(params)
        elif list(params) != keys:
            raise ValueError(
                f"{path}: its model keys differ from {paths[0]}'s; only checkpoints of one model can be averaged"
            )
        for key, value in params.items():
            value = value.float() if value.is_floating_point() else value
            sums[key] = value.clone() if key not in sums else sums[key] + value
    assert first is not None
    n = len(paths)
    first["model"] = {
        k: v / n if v.is_floating_point() else torch.div(v, n, rounding_mode="floor") for k, v in sums.items()
    }
    return first


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    cfg = parse(argv)
    paths = cfg.inputs
    count = cfg.num_epoch_checkpoints or cfg.num_update_checkpoints
    if count:
        if len(paths) != 1 or not os.path.isdir(paths[0]):
            logger.error("--num-epoch/update-checkpoints: --inputs must be one folder")
            return 2
        try:
            paths = last_checkpoints(
                paths[0], count, update_based=bool(cfg.num_update_checkpoints), upper_bound=cfg.checkpoint_upper_bound
            )
        except ValueError as err:  # too few checkpoint files in the folder
            logger.error("%s", err)
            return 1
    logger.info("averaging checkpoints: %s", paths)
    from seqloom.checkpoint.io import save_checkpoint

    try:
        averaged = average_checkpoints(paths)
        save_checkpoint(averaged, cfg.output)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        logger.error("%s", err)
        return 1
    logger.info("Finished writing averaged checkpoint to %s", cfg.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
