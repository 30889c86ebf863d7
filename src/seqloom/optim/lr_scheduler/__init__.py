"""Learning-rate schedules: pure functions of the update number, wrapped in fairseq's scheduler protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch

from seqloom import registry
from seqloom.optim.lr_scheduler.base import LRScheduler, ScheduleInputs, as_lr_tuple

__all__ = ["LRScheduler", "ScheduleInputs", "build_lr_scheduler", "import_schedulers"]


def import_schedulers() -> None:
    """Registers the built-in schedules (idempotent)."""
    from seqloom.optim.lr_scheduler import (  # noqa: F401
        cosine,
        fixed,
        inverse_sqrt,
        manual,
        polynomial_decay,
        reduce_lr_on_plateau,
        step,
        tri_stage,
        triangular,
    )


def build_lr_scheduler(
    name: str,
    cfg: object,
    optimizer: torch.optim.Optimizer,
    *,
    lr: float | Sequence[float],
    max_update: int = 0,
    maximize_best_checkpoint_metric: bool = False,
) -> LRScheduler:
    """The schedule registered as ``name`` (``--lr-scheduler``); it sets the optimizer's initial rate.

    ``lr`` is fairseq's ``--lr`` list, ``max_update`` its ``--max-update`` (0: unset) and
    ``maximize_best_checkpoint_metric`` its flag of that name. ``cfg`` None means the defaults.
    """
    import_schedulers()
    entry = registry.LR_SCHEDULERS.entry(name)
    config_cls = entry.config_cls
    assert config_cls is not None, f"lr scheduler {name!r} was registered without config=..."
    if cfg is None:
        cfg = config_cls()
    elif not isinstance(cfg, config_cls):
        raise TypeError(f"--lr-scheduler {name} expects a {config_cls.__name__}, got {type(cfg).__name__}")
    inputs = ScheduleInputs(
        lr=as_lr_tuple(lr),
        max_update=int(max_update or 0),
        maximize_best_checkpoint_metric=maximize_best_checkpoint_metric,
    )
    return cast(LRScheduler, entry.obj(cfg, optimizer, inputs))
