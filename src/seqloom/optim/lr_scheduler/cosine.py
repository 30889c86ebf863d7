"""``--lr-scheduler cosine``: linear warmup, then cosine annealing with restarts (SGDR).

    lr(n) = init + n * (lr - init) / warmup                                        n < warmup
          = min_i + 0.5 * (max_i - min_i) * (1 + cos(pi * t_curr / t_i))          afterwards

With ``c = n - warmup`` and period ``P`` (``--lr-period-updates``, default ``--max-update - warmup``):
restart ``i = floor(c / P)`` when ``t_mult == 1``, else ``floor(log_{t_mult}(1 - c / P * (1 - t_mult)))``;
``t_i = t_mult^i * P``; ``t_curr = c - P * (1 - t_mult^i) / (1 - t_mult)`` (``c - i * P`` when
``t_mult == 1``); ``max_i = lr * lr_shrink^i``, ``min_i = min_lr * lr_shrink^i``. ``init`` is
``--warmup-init-lr``, or ``--min-lr`` when negative. Same arithmetic as fairseq 0.12 (whose ``--lr`` is
the maximum and ``--min-lr`` the minimum; fairseq < 0.10's ``--max-lr`` no longer exists).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from seqloom import registry
from seqloom.config import field
from seqloom.optim.lr_scheduler.base import LRScheduler, ScheduleInputs, warmup_step


@dataclass(kw_only=True)
class CosineConfig:
    """Flags of fairseq's ``cosine`` schedule."""

    warmup_updates: int = field(
        0, help="raise the learning rate in a straight line over the first N updates (0: no warmup)"
    )
    warmup_init_lr: float = field(-1.0, help="learning rate the warmup starts from (-1: --min-lr)")
    min_lr: float = field(0.0, help="learning rate at the bottom of each cosine period")
    t_mult: float = field(1.0, help="each period is this many times as long as the one before (1: equal periods)")
    lr_period_updates: float = field(
        -1.0, help="length of the first period, in updates (-1: --max-update less the warmup)"
    )
    lr_shrink: float = field(0.1, help="both ends of the cosine are multiplied by this after each period")


def cosine_restart(curr_updates: float, *, period: float, t_mult: float) -> tuple[int, float, float]:
    """(restart index i, period length t_i, position t_curr in that period) after ``curr_updates``."""
    if t_mult != 1:
        i = math.floor(math.log(1 - curr_updates / period * (1 - t_mult), t_mult))
        t_i = t_mult**i * period
        t_curr = curr_updates - (1 - t_mult**i) / (1 - t_mult) * period
    else:
        i = math.floor(curr_updates / period)
        t_i = period
        t_curr = curr_updates - (period * i)
    return i, t_i, t_curr


def cosine_lr(
    num_updates: int,
    *,
    lr: float,
    period: float,
    min_lr: float = 0.0,
    warmup_updates: int = 0,
    warmup_init_lr: float = -1.0,
    t_mult: float = 1.0,
    lr_shrink: float = 0.1,
) -> float:
    """The learning rate after ``num_updates`` updates (see the module docstring)."""
    init = warmup_init_lr if warmup_init_lr >= 0 else min_lr
    if num_updates < warmup_updates:
        return init + num_updates * warmup_step(init, lr, warmup_updates)
    i, t_i, t_curr = cosine_restart(num_updates - warmup_updates, period=period, t_mult=t_mult)
    shrink = lr_shrink**i
    lo, hi = min_lr * shrink, lr * shrink
    return lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * t_curr / t_i))


def cosine_period(lr_period_updates: float, *, max_update: int, warmup_updates: int) -> float:
    """``--lr-period-updates``, or ``--max-update - --warmup-updates`` when it is not positive."""
    if lr_period_updates > 0:
        return lr_period_updates
    if max_update <= 0:
        raise ValueError("--lr-scheduler cosine needs --lr-period-updates or --max-update")
    period = max_update - warmup_updates
    if period <= 0:
        raise ValueError(
            f"--lr-scheduler cosine: --max-update {max_update} must exceed --warmup-updates {warmup_updates}"
        )
    return period


@registry.LR_SCHEDULERS.register("cosine", config=CosineConfig)
class CosineSchedule(LRScheduler):
    name = "cosine"

    def __init__(self, cfg: CosineConfig, optimizer: torch.optim.Optimizer, inputs: ScheduleInputs) -> None:
        super().__init__(optimizer, inputs)
        self.cfg = cfg
        self.lr = self.single_lr()
        if not self.lr > cfg.min_lr:
            raise ValueError(f"--lr-scheduler cosine: --lr ({self.lr}) must be more than --min-lr ({cfg.min_lr})")
        self.period = cosine_period(
            cfg.lr_period_updates, max_update=inputs.max_update, warmup_updates=cfg.warmup_updates
        )
        self.step_update(0)

    def lr_at(self, num_updates: int) -> float:
        cfg = self.cfg
        return cosine_lr(
            num_updates,
            lr=self.lr,
            period=self.period,
            min_lr=cfg.min_lr,
            warmup_updates=cfg.warmup_updates,
            warmup_init_lr=cfg.warmup_init_lr,
            t_mult=cfg.t_mult,
            lr_shrink=cfg.lr_shrink,
        )
