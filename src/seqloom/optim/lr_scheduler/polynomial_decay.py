"""``--lr-scheduler polynomial_decay``: linear warmup, then polynomial decay to ``--end-learning-rate``.

    lr(n) = lr * n / warmup                                                  n <= warmup (warmup > 0)
          = end_lr                                                           n >= total
          = (lr - end_lr) * (1 - (n - warmup) / (total - warmup)) ** power + end_lr   otherwise

``total`` is ``--total-num-update`` (default ``--max-update``). ``lr`` is the epoch's base rate: as in
fairseq, ``lrs[min(epoch, len(lrs) - 1)]`` (indexed by the 1-based epoch, so a second ``--lr`` value is
used from the first epoch on), and from ``--force-anneal`` on, the learning rate current at the start of
the epoch (so each later epoch restarts the decay from there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch

from seqloom import registry
from seqloom.config import field
from seqloom.optim.lr_scheduler.base import LRScheduler, ScheduleInputs


@dataclass(kw_only=True)
class PolynomialDecayConfig:
    """Flags of fairseq's ``polynomial_decay`` schedule."""

    warmup_updates: int = field(
        0, help="raise the learning rate in a straight line over the first N updates (0: no warmup)"
    )
    force_anneal: Optional[int] = field(
        None, help="stop decaying after this epoch and keep that learning rate (unset: never)", aliases=("--fa",)
    )
    end_learning_rate: float = field(0.0, help="learning rate reached at the end of the decay")
    power: float = field(1.0, help="exponent of the decay curve (1: a straight line)")
    total_num_update: Optional[float] = field(None, help="update at which the decay ends (unset: --max-update)")


def polynomial_decay_lr(
    num_updates: int,
    *,
    lr: float,
    total_num_update: float,
    warmup_updates: int = 0,
    end_learning_rate: float = 0.0,
    power: float = 1.0,
) -> float:
    """The learning rate after ``num_updates`` updates (see the module docstring)."""
    if warmup_updates > 0 and num_updates <= warmup_updates:
        return num_updates / float(warmup_updates) * lr
    if num_updates >= total_num_update:
        return end_learning_rate
    remaining = 1 - (num_updates - warmup_updates) / (total_num_update - warmup_updates)
    return (lr - end_learning_rate) * remaining**power + end_learning_rate


def polynomial_epoch_lr(epoch: int, *, lrs: Sequence[float], force_anneal: int | None, current_lr: float) -> float:
    """The base learning rate set at the start of ``epoch`` (fairseq's ``get_next_lr``)."""
    if force_anneal is None or epoch < force_anneal:
        return lrs[min(epoch, len(lrs) - 1)]
    return current_lr


@registry.LR_SCHEDULERS.register("polynomial_decay", config=PolynomialDecayConfig)
class PolynomialDecaySchedule(LRScheduler):
    name = "polynomial_decay"

    def __init__(self, cfg: PolynomialDecayConfig, optimizer: torch.optim.Optimizer, inputs: ScheduleInputs) -> None:
        super().__init__(optimizer, inputs)
        if not inputs.lr:
            raise ValueError("--lr-scheduler polynomial_decay needs an --lr")
        self.cfg = cfg
        self.total_num_update = cfg.total_num_update if cfg.total_num_update is not None else inputs.max_update
        if not self.total_num_update or self.total_num_update <= 0:
            raise ValueError(
                "--lr-scheduler polynomial_decay needs --total-num-update or --max-update > 0 "
                f"(got {cfg.total_num_update} and {inputs.max_update})"
            )
        self.lr = float(inputs.lr[0])
        self.step_update(0)

    def lr_at(self, num_updates: int) -> float:
        cfg = self.cfg
        return polynomial_decay_lr(
            num_updates,
            lr=self.lr,
            total_num_update=self.total_num_update,
            warmup_updates=cfg.warmup_updates,
            end_learning_rate=cfg.end_learning_rate,
            power=cfg.power,
        )

    def step_begin_epoch(self, epoch: int) -> float:
        self.lr = polynomial_epoch_lr(
            epoch, lrs=self.inputs.lr, force_anneal=self.cfg.force_anneal, current_lr=self.get_lr()
        )
        return self.step_update(self.num_updates)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "lr": self.lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.lr = float(state_dict.get("lr", self.lr))
