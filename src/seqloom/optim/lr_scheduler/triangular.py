"""``--lr-scheduler triangular``: a triangular cyclical rate (Smith 2017) between ``--lr`` and ``--max-lr``.

With ``s = --lr-period-updates // 2`` and cycle ``c = floor(n / 2s)``, the peak is ``max_lr * lr_shrink^c``
(and the floor ``lr * lr_shrink^c`` with ``--shrink-min``, else ``lr``):

    lr(n) = low + (high - low) * max(0, 1 - |n / s - 2c - 1|)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from seqloom import registry
from seqloom.config import field
from seqloom.optim.lr_scheduler.base import LRScheduler, ScheduleInputs


@dataclass(kw_only=True)
class TriangularConfig:
    """Flags of fairseq's ``triangular`` schedule."""

    max_lr: Optional[float] = field(None, help="top of each cycle; --lr is its bottom (required, above --lr)")
    lr_period_updates: float = field(5000, help="length of a cycle in updates, half rising and half falling")
    lr_shrink: float = field(0.1, help="both ends of the cycle are multiplied by this after each cycle")
    shrink_min: bool = field(False, help="shrink the bottom of the cycle as well (otherwise only the top shrinks)")


def triangular_lr(num_updates: int, *, lr: float, max_lr: float, lr_period_updates: float = 5000,
                  lr_shrink: float = 0.1, shrink_min: bool = False) -> float:  # fmt: skip
    """The learning rate after ``num_updates`` updates (see the module docstring)."""
    stepsize = lr_period_updates // 2
    cycle = math.floor(num_updates / (2 * stepsize))
    shrink = lr_shrink**cycle
    high, low = max_lr * shrink, lr * shrink if shrink_min else lr
    x = abs(num_updates / stepsize - 2 * (cycle + 1) + 1)
    return low + (high - low) * max(0, 1 - x)


@registry.LR_SCHEDULERS.register("triangular", config=TriangularConfig)
class TriangularSchedule(LRScheduler):
    name = "triangular"

    def __init__(self, cfg: TriangularConfig, optimizer: torch.optim.Optimizer, inputs: ScheduleInputs) -> None:
        super().__init__(optimizer, inputs)
        self.cfg, self.lr = cfg, self.single_lr()
        if cfg.max_lr is None:
            raise ValueError("--lr-scheduler triangular needs --max-lr (the peak rate, above --lr)")
        if cfg.max_lr <= self.lr:
            raise ValueError(f"--lr-scheduler triangular: --max-lr ({cfg.max_lr}) must be more than --lr ({self.lr})")
        if cfg.lr_period_updates // 2 <= 0:
            raise ValueError("--lr-scheduler triangular: --lr-period-updates must be at least 2")
        self.step_update(0)

    def lr_at(self, num_updates: int) -> float:
        cfg = self.cfg
        assert cfg.max_lr is not None
        return triangular_lr(num_updates, lr=self.lr, max_lr=cfg.max_lr, lr_period_updates=cfg.lr_period_updates,
                             lr_shrink=cfg.lr_shrink, shrink_min=cfg.shrink_min)  # fmt: skip
