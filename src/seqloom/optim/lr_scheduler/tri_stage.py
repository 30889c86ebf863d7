"""``--lr-scheduler tri_stage``: warmup, hold, exponential decay, then constant (SpecAugment paper).

    lr(n) = init + n * (peak - init) / warmup          n < warmup
          = peak                                       n < warmup + hold
          = peak * exp(-k * (n - warmup - hold))       n <= warmup + hold + decay,  k = -ln(final_scale) / decay
          = peak * final_scale                         afterwards

``init = peak * --init-lr-scale``. With ``--phase-ratio '(a, b, c)'`` the three lengths are
``int(max_update * a)`` etc. (the ratios must sum to 1).
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
class TriStageConfig:
    """Flags of fairseq's ``tri_stage`` schedule."""

    warmup_steps: int = field(0, help="updates over which the learning rate rises from its start to --lr")
    hold_steps: int = field(0, help="updates it then stays at --lr")
    decay_steps: int = field(0, help="updates over which it then falls, exponentially, to its final value")
    phase_ratio: Optional[tuple[float, float, float]] = field(
        None,
        help="shares of --max-update given to warmup, hold and decay, such as (0.1, 0.4, 0.5), which must add up to 1 (instead of the three step counts)",
    )
    init_lr_scale: float = field(0.01, help="the warmup starts from --lr times this")
    final_lr_scale: float = field(0.01, help="the decay ends at --lr times this, kept from then on")


@dataclass(frozen=True, kw_only=True)
class TriStagePhases:
    """Lengths of the three phases, in updates."""

    warmup: int
    hold: int
    decay: int


def tri_stage_phases(cfg: TriStageConfig, *, max_update: int) -> TriStagePhases:
    if cfg.phase_ratio is not None:
        if max_update <= 0:
            raise ValueError("--lr-scheduler tri_stage: --phase-ratio needs --max-update > 0")
        if not math.isclose(sum(cfg.phase_ratio), 1.0):
            raise ValueError(f"--phase-ratio {cfg.phase_ratio}: the three ratios must add up to 1")
        warmup, hold, decay = (int(max_update * r) for r in cfg.phase_ratio)
        phases = TriStagePhases(warmup=warmup, hold=hold, decay=decay)
    else:
        phases = TriStagePhases(warmup=cfg.warmup_steps, hold=cfg.hold_steps, decay=cfg.decay_steps)
    if phases.decay <= 0:
        raise ValueError(
            "--lr-scheduler tri_stage needs a decay phase: set --decay-steps > 0 or --phase-ratio "
            f"(got {phases}); fairseq divides by the decay length"
        )
    return phases


def tri_stage_lr(
    num_updates: int, *, lr: float, phases: TriStagePhases, init_lr_scale: float = 0.01, final_lr_scale: float = 0.01
) -> float:
    """The learning rate after ``num_updates`` updates (see the module docstring)."""
    init_lr = init_lr_scale * lr
    if num_updates < phases.warmup:
        return init_lr + (lr - init_lr) / phases.warmup * num_updates
    offset = phases.warmup
    if num_updates < offset + phases.hold:
        return lr
    offset += phases.hold
    if num_updates <= offset + phases.decay:
        decay_factor = -math.log(final_lr_scale) / phases.decay
        return lr * math.exp(-decay_factor * (num_updates - offset))
    return final_lr_scale * lr


@registry.LR_SCHEDULERS.register("tri_stage", config=TriStageConfig)
class TriStageSchedule(LRScheduler):
    name = "tri_stage"

    def __init__(self, cfg: TriStageConfig, optimizer: torch.optim.Optimizer, inputs: ScheduleInputs) -> None:
        super().__init__(optimizer, inputs)
        self.cfg = cfg
        self.lr = self.single_lr()
        self.phases = tri_stage_phases(cfg, max_update=inputs.max_update)
        self.step_update(0)

    def lr_at(self, num_updates: int) -> float:
        return tri_stage_lr(
            num_updates,
            lr=self.lr,
            phases=self.phases,
            init_lr_scale=self.cfg.init_lr_scale,
            final_lr_scale=self.cfg.final_lr_scale,
        )
