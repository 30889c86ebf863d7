"""``--lr-scheduler reduce_lr_on_plateau``: shrink the learning rate when validation stops improving.

Optional linear warmup (``lr(n) = init + n * (lr - init) / warmup`` for ``n <= warmup``; ``init`` is
``--warmup-init-lr`` or 0), after which the rate is a pure function of the validation history, folded by
:func:`plateau_step` with the semantics of ``torch.optim.lr_scheduler.ReduceLROnPlateau`` as fairseq
configures it (relative threshold, no cooldown, ``min_lr`` 0, changes below 1e-8 ignored):

    improved = val < best * (1 - threshold)          (``>`` and ``1 + threshold`` when maximizing)
    bad      = 0 if improved else bad + 1
    if bad > patience: lr *= lr_shrink; bad = 0

Validation results reported before the warmup has ended are ignored, as in fairseq.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from seqloom import registry
from seqloom.config import field
from seqloom.optim.lr_scheduler.base import LRScheduler, ScheduleInputs, warmup_step

MIN_LR_CHANGE = 1e-8  # torch's ReduceLROnPlateau ``eps``


@dataclass(kw_only=True)
class ReduceLROnPlateauConfig:
    """Flags of fairseq's ``reduce_lr_on_plateau`` schedule."""

    lr_shrink: float = field(0.1, help="factor applied to the learning rate each time validation stops improving")
    lr_threshold: float = field(
        1e-4, help="relative change of the validation figure that counts as an improvement (1e-4: 0.01 percent)"
    )
    lr_patience: int = field(
        0, help="validations without improvement that are tolerated before the learning rate is lowered"
    )
    warmup_updates: int = field(
        0, help="raise the learning rate in a straight line over the first N updates (0: no warmup)"
    )
    warmup_init_lr: float = field(-1.0, help="learning rate the warmup starts from (-1: 0)")


@dataclass(frozen=True, kw_only=True)
class PlateauState:
    """The fold of the validation history: the learning rate after warmup and torch's plateau counters."""

    lr: float
    best: float
    num_bad_epochs: int = 0
    last_epoch: int = 0

    @staticmethod
    def initial(lr: float, *, maximize: bool = False) -> PlateauState:
        return PlateauState(lr=lr, best=-math.inf if maximize else math.inf)


def plateau_step(
    state: PlateauState, val_loss: float, *, cfg: ReduceLROnPlateauConfig, maximize: bool = False
) -> PlateauState:
    """The state after one more validation result (see the module docstring)."""
    val = float(val_loss)
    improved = val > state.best * (1 + cfg.lr_threshold) if maximize else val < state.best * (1 - cfg.lr_threshold)
    best = val if improved else state.best
    bad = 0 if improved else state.num_bad_epochs + 1
    lr = state.lr
    if bad > cfg.lr_patience:
        new_lr = max(lr * cfg.lr_shrink, 0.0)
        if lr - new_lr > MIN_LR_CHANGE:
            lr = new_lr
        bad = 0
    return PlateauState(lr=lr, best=best, num_bad_epochs=bad, last_epoch=state.last_epoch + 1)


def plateau_lr_after(
    history: Iterable[float], *, lr: float, cfg: ReduceLROnPlateauConfig, maximize: bool = False
) -> float:
    """The post-warmup learning rate after the validation results ``history``."""
    state = PlateauState.initial(lr, maximize=maximize)
    for val in history:
        state = plateau_step(state, val, cfg=cfg, maximize=maximize)
    return state.lr


def plateau_warmup_lr(num_updates: int, *, lr: float, cfg: ReduceLROnPlateauConfig) -> float:
    """The learning rate during warmup (``num_updates <= --warmup-updates``), and the one warmup ends on."""
    init = cfg.warmup_init_lr if cfg.warmup_init_lr >= 0 else 0.0
    return init + num_updates * warmup_step(init, lr, cfg.warmup_updates)


@registry.LR_SCHEDULERS.register("reduce_lr_on_plateau", config=ReduceLROnPlateauConfig)
class ReduceLROnPlateauSchedule(LRScheduler):
    name = "reduce_lr_on_plateau"

    def __init__(self, cfg: ReduceLROnPlateauConfig, optimizer: torch.optim.Optimizer, inputs: ScheduleInputs) -> None:
        super().__init__(optimizer, inputs)
        self.cfg = cfg
        self.maximize = inputs.maximize_best_checkpoint_metric
        peak = self.single_lr()
        # fairseq's rate at the end of warmup is init + warmup * step, which may differ from --lr in the last bit
        after_warmup = plateau_warmup_lr(cfg.warmup_updates, lr=peak, cfg=cfg) if cfg.warmup_updates > 0 else peak
        self.peak = peak
        self.state = PlateauState.initial(after_warmup, maximize=self.maximize)
        self.step_update(0)

    def warmup_ended(self) -> bool:
        return self.cfg.warmup_updates <= 0 or self.num_updates > self.cfg.warmup_updates

    def lr_at(self, num_updates: int) -> float:
        if self.cfg.warmup_updates > 0 and num_updates <= self.cfg.warmup_updates:
            return plateau_warmup_lr(num_updates, lr=self.peak, cfg=self.cfg)
        return self.state.lr

    def step(self, epoch: int, val_loss: float | None = None) -> float:
        if val_loss is not None and self.warmup_ended():
            self.state = plateau_step(self.state, val_loss, cfg=self.cfg, maximize=self.maximize)
        else:
            self.state = dataclasses.replace(self.state, last_epoch=epoch)
        return self.step_update(self.num_updates)

    def state_dict(self) -> dict[str, Any]:
        """fairseq's keys (``best``, ``last_epoch``, ``num_bad_epochs``) plus the reduced ``lr``."""
        s = self.state
        return {"best": s.best, "last_epoch": s.last_epoch, "num_bad_epochs": s.num_bad_epochs, "lr": s.lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the counters. fairseq keeps the reduced rate only in the optimizer's state, so for a
        fairseq checkpoint (no ``lr``) that has counted a validation result the optimizer's current rate is
        taken: load the optimizer state first, as fairseq's trainer does."""
        s = self.state
        best = float(state_dict["best"])
        if "lr" in state_dict:
            lr = float(state_dict["lr"])
        else:
            lr = s.lr if math.isinf(best) else self.get_lr()
        self.state = PlateauState(
            lr=lr,
            best=best,
            num_bad_epochs=int(state_dict.get("num_bad_epochs", s.num_bad_epochs)),
            last_epoch=int(state_dict.get("last_epoch", s.last_epoch)),
        )
