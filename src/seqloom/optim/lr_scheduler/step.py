"""``--lr-scheduler step``: linear warmup, then the rate multiplied by ``--lr-decay`` every ``--lr-deacy-period``
updates (the flag keeps fairseq's spelling), never below ``--min-lr``.

    lr(n) = init + n * (lr - init) / warmup                                    n < warmup
          = max(lr * lr_decay ^ floor((n - warmup) / period), min_lr)          afterwards

``init`` is ``--warmup-init-lr``, or ``--min-lr`` when negative (as fairseq 0.12 computes it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqloom import registry
from seqloom.config import field
from seqloom.optim.build import set_lr
from seqloom.optim.lr_scheduler.base import LRScheduler, ScheduleInputs, warmup_step


@dataclass(kw_only=True)
class StepConfig:
    """Flags of fairseq's ``step`` schedule."""

    warmup_updates: int = field(
        0, help="raise the learning rate in a straight line over the first N updates (0: no warmup)"
    )
    warmup_init_lr: float = field(-1.0, help="learning rate the warmup starts from (-1: --min-lr)")
    min_lr: float = field(0.0, help="the learning rate never decays below this")
    lr_deacy_period: int = field(25000, help="updates between two decays of the learning rate")
    lr_decay: float = field(0.5, help="factor applied to the learning rate at each decay")


def step_lr(num_updates: int, *, lr: float, min_lr: float = 0.0, warmup_updates: int = 0,
            warmup_init_lr: float = -1.0, lr_deacy_period: int = 25000, lr_decay: float = 0.5) -> float:  # fmt: skip
    """The learning rate after ``num_updates`` updates (see the module docstring)."""
    init = warmup_init_lr if warmup_init_lr >= 0 else min_lr
    if num_updates < warmup_updates:
        return init + num_updates * warmup_step(init, lr, warmup_updates)
    return max(lr * lr_decay ** ((num_updates - warmup_updates) // lr_deacy_period), min_lr)


@registry.LR_SCHEDULERS.register("step", config=StepConfig)
class StepSchedule(LRScheduler):
    name = "step"

    def __init__(self, cfg: StepConfig, optimizer: torch.optim.Optimizer, inputs: ScheduleInputs) -> None:
        super().__init__(optimizer, inputs)
        self.cfg, self.lr = cfg, self.single_lr()
        problems = [text for text, bad in (
            ("--lr-deacy-period must be positive", cfg.lr_deacy_period <= 0),
            ("--lr-decay must be at most 1", cfg.lr_decay > 1), ("--min-lr must be non-negative", cfg.min_lr < 0),
            (f"--lr ({self.lr}) must be more than --min-lr ({cfg.min_lr})", self.lr <= cfg.min_lr),
        ) if bad]  # fmt: skip
        if problems:
            raise ValueError(f"--lr-scheduler step: {'; '.join(problems)}")
        # fairseq starts from the warmup's initial rate; the trainer's step_update(0) then sets the first one
        set_lr(optimizer, cfg.warmup_init_lr if cfg.warmup_init_lr >= 0 else cfg.min_lr)

    def lr_at(self, num_updates: int) -> float:
        cfg = self.cfg
        return step_lr(num_updates, lr=self.lr, min_lr=cfg.min_lr, warmup_updates=cfg.warmup_updates,
                       warmup_init_lr=cfg.warmup_init_lr, lr_deacy_period=cfg.lr_deacy_period,
                       lr_decay=cfg.lr_decay)  # fmt: skip
