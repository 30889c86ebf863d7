"""``--lr-scheduler fixed``: one learning rate per epoch, optional annealing and linear warmup.

    base(epoch) = lrs[min(epoch - 1, len(lrs) - 1)]                          epoch < force_anneal
                = lrs[-1] * lr_shrink ** (epoch + 1 - force_anneal)          otherwise
    lr(n, epoch) = base(epoch) * (n + 1) / warmup     for n < warmup, else base(epoch)

Epochs are 1-based, as in fairseq.
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
class FixedConfig:
    """Flags of fairseq's ``fixed`` schedule."""

    force_anneal: Optional[int] = field(
        None,
        help="from this epoch on, multiply the last --lr by --lr-shrink at every epoch (unset: never)",
        aliases=("--fa",),
    )
    lr_shrink: float = field(0.1, help="factor applied per epoch once --force-anneal is reached")
    warmup_updates: int = field(
        0, help="raise the learning rate in a straight line over the first N updates (0: no warmup)"
    )


def fixed_epoch_lr(epoch: int, *, lrs: Sequence[float], force_anneal: int | None, lr_shrink: float) -> float:
    """The learning rate of ``epoch`` (1-based) before warmup."""
    if force_anneal is None or epoch < force_anneal:
        return lrs[min(epoch - 1, len(lrs) - 1)]
    return lrs[-1] * lr_shrink ** (epoch + 1 - force_anneal)


def fixed_lr(
    num_updates: int,
    epoch: int,
    *,
    lrs: Sequence[float],
    force_anneal: int | None = None,
    lr_shrink: float = 0.1,
    warmup_updates: int = 0,
) -> float:
    """The learning rate after ``num_updates`` updates, during ``epoch`` (see the module docstring)."""
    base = fixed_epoch_lr(epoch, lrs=lrs, force_anneal=force_anneal, lr_shrink=lr_shrink)
    if warmup_updates > 0 and num_updates < warmup_updates:
        return (num_updates + 1) / float(warmup_updates) * base
    return base


@registry.LR_SCHEDULERS.register("fixed", config=FixedConfig)
class FixedSchedule(LRScheduler):
    name = "fixed"

    def __init__(self, cfg: FixedConfig, optimizer: torch.optim.Optimizer, inputs: ScheduleInputs) -> None:
        super().__init__(optimizer, inputs)
        if not inputs.lr:
            raise ValueError("--lr-scheduler fixed needs at least one --lr value")
        self.cfg = cfg
        self.epoch = 1
        self.step_update(0)

    def lr_at(self, num_updates: int) -> float:
        cfg = self.cfg
        return fixed_lr(
            num_updates,
            self.epoch,
            lrs=self.inputs.lr,
            force_anneal=cfg.force_anneal,
            lr_shrink=cfg.lr_shrink,
            warmup_updates=cfg.warmup_updates,
        )

    def step_begin_epoch(self, epoch: int) -> float:
        self.epoch = epoch
        return self.step_update(self.num_updates)

    def state_dict(self) -> dict[str, Any]:
        """fairseq stores the epoch's base learning rate under ``lr``; we add the epoch."""
        cfg = self.cfg
        base = fixed_epoch_lr(self.epoch, lrs=self.inputs.lr, force_anneal=cfg.force_anneal, lr_shrink=cfg.lr_shrink)
        return {"best": self.best, "lr": base, "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.epoch = int(state_dict.get("epoch", self.epoch))
