"""The LR scheduler wrapper shared by every schedule.

Each schedule is a pure function of the update number (see the per-schedule modules); the wrapper only
adds fairseq's calling protocol, which the trainer drives as fairseq's does:

* ``step_begin_epoch(epoch)`` at the start of each epoch (1-based), then ``step_update(num_updates)``;
* ``step_update(num_updates)`` after every optimizer update, with the updates done so far; it sets the
  learning rate used by the *next* update on every param group and returns it;
* ``step(epoch, val_loss)`` after validation at the end of an epoch, then ``step_update`` again;
* ``state_dict()`` / ``load_state_dict()`` with fairseq's keys (``best``; plus each schedule's own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from seqloom.optim.build import get_lr, set_lr


@dataclass(frozen=True, kw_only=True)
class ScheduleInputs:
    """What a schedule reads from outside its own config (fairseq's ``II(...)`` interpolations)."""

    lr: tuple[float, ...]
    """``--lr``: one value per epoch for ``fixed``, else a single peak learning rate."""
    max_update: int = 0
    """``--max-update`` (0: unset), the default length of cosine / polynomial / tri-stage schedules."""
    maximize_best_checkpoint_metric: bool = False
    """``--maximize-best-checkpoint-metric``: ``reduce_lr_on_plateau`` then waits for the metric to rise."""


class LRScheduler:
    """Base class: sets ``lr_at(num_updates)`` on the optimizer; subclasses define ``lr_at``."""

    name = "base"

    def __init__(self, optimizer: torch.optim.Optimizer, inputs: ScheduleInputs) -> None:
        self.optimizer = optimizer
        self.inputs = inputs
        self.best: float | None = None
        self.num_updates = 0

    def single_lr(self) -> float:
        """The one ``--lr`` value a non-``fixed`` schedule accepts."""
        if len(self.inputs.lr) != 1:
            raise ValueError(
                f"--lr-scheduler {self.name} takes a single --lr, got {list(self.inputs.lr)}; "
                "use --lr-scheduler fixed for one learning rate per epoch"
            )
        return float(self.inputs.lr[0])

    def lr_at(self, num_updates: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> float:
        return get_lr(self.optimizer)

    def step_begin_epoch(self, epoch: int) -> float:
        """Called at the beginning of ``epoch`` (1-based); returns the current learning rate."""
        return self.get_lr()

    def step(self, epoch: int, val_loss: float | None = None) -> float:
        """Called at the end of ``epoch`` with the validation metric (or None); returns the learning rate."""
        if val_loss is not None:
            self.best = val_loss if self.best is None else min(self.best, val_loss)
        return self.get_lr()

    def step_update(self, num_updates: int) -> float:
        """Sets and returns the learning rate for the update after ``num_updates`` updates."""
        self.num_updates = num_updates
        lr = self.lr_at(num_updates)
        set_lr(self.optimizer, lr)
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")


def warmup_step(start: float, end: float, warmup_updates: int) -> float:
    """fairseq's linear warmup increment per update (``(end - start) / warmup_updates``)."""
    return (end - start) / warmup_updates


def as_lr_tuple(lr: float | Sequence[float]) -> tuple[float, ...]:
    return (float(lr),) if isinstance(lr, (int, float)) else tuple(float(v) for v in lr)
