"""``--lr-scheduler inverse_sqrt``: linear warmup, then decay with the inverse square root of the update.

    lr(n) = init + n * (lr - init) / warmup           for n < warmup
          = lr * sqrt(warmup) / sqrt(n)               afterwards

``init`` is ``--warmup-init-lr``, or 0 when it is negative (the default). The arithmetic follows
fairseq's order of operations, so the values are bit-identical to fairseq's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqloom import registry
from seqloom.config import field
from seqloom.optim.lr_scheduler.base import LRScheduler, ScheduleInputs, warmup_step


@dataclass(kw_only=True)
class InverseSqrtConfig:
    """Flags of fairseq's ``inverse_sqrt`` schedule."""

    warmup_updates: int = field(
        4000,
        help="raise the learning rate in a straight line to --lr over the first N updates; after them it falls as 1/sqrt(update)",
    )
    warmup_init_lr: float = field(-1.0, help="learning rate the warmup starts from (-1: 0)")


def inverse_sqrt_lr(num_updates: int, *, lr: float, warmup_updates: int, warmup_init_lr: float = -1.0) -> float:
    """The learning rate after ``num_updates`` updates (see the module docstring)."""
    if warmup_updates <= 0:
        raise ValueError(
            f"--lr-scheduler inverse_sqrt needs --warmup-updates > 0 (got {warmup_updates}): the decay is "
            "lr * sqrt(warmup_updates / num_updates), which is 0 without warmup (fairseq divides by zero here)"
        )
    init = warmup_init_lr if warmup_init_lr >= 0 else 0.0
    if num_updates < warmup_updates:
        return init + num_updates * warmup_step(init, lr, warmup_updates)
    decay_factor = lr * warmup_updates**0.5
    return decay_factor * num_updates**-0.5


@registry.LR_SCHEDULERS.register("inverse_sqrt", config=InverseSqrtConfig)
class InverseSqrtSchedule(LRScheduler):
    name = "inverse_sqrt"

    def __init__(self, cfg: InverseSqrtConfig, optimizer: torch.optim.Optimizer, inputs: ScheduleInputs) -> None:
        super().__init__(optimizer, inputs)
        self.cfg = cfg
        self.lr = self.single_lr()
        self.step_update(0)

    def lr_at(self, num_updates: int) -> float:
        return inverse_sqrt_lr(
            num_updates, lr=self.lr, warmup_updates=self.cfg.warmup_updates, warmup_init_lr=self.cfg.warmup_init_lr
        )
