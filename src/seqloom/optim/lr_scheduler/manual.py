"""``--lr-scheduler manual``: rates set by hand per epoch (``--epoch2lr``) and per update (``--update2lr``).

Both flags are dictionaries as fairseq reads them: keys are a number, a comma list (``"1,3"``) or an inclusive
range (``"2-5"``), e.g. ``--update2lr '{"0": 1e-3, "1000-1999": 5e-4, "2000": 1e-4}'``. At the start of an
epoch the rate is the one of the largest ``--epoch2lr`` key not above it; after each update, the one of the
largest ``--update2lr`` key not above the number of updates. Where no key applies the rate stays as it is.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

import torch

from seqloom import registry
from seqloom.config import field
from seqloom.optim.build import set_lr
from seqloom.optim.lr_scheduler.base import LRScheduler, ScheduleInputs


@dataclass(kw_only=True)
class ManualConfig:
    """Flags of fairseq's ``manual`` schedule."""

    epoch2lr: str = field("{}", help='learning rate from given epochs on, as a dict such as "{1: 0.5, 10: 0.1}"')
    update2lr: str = field("{}", help='learning rate from given updates on, as a dict such as "{1000: 0.5, 5000: 0.1}"')


def parse_manual(flag: str, text: str) -> dict[int, float]:
    """``{"1": 0.1, "2,4": 0.05, "5-7": 0.01}`` -> ``{1: 0.1, 2: 0.05, 4: 0.05, 5: 0.01, 6: 0.01, 7: 0.01}``."""
    try:
        table = ast.literal_eval(text.replace(" ", ""))
    except (ValueError, SyntaxError) as err:
        raise ValueError(f"{flag}: {text!r} is not a dictionary ({err})") from None
    if not isinstance(table, dict):
        raise ValueError(f"{flag}: {text!r} must evaluate to a dictionary")
    out: dict[int, float] = {}
    for key, value in table.items():
        key = str(key)
        if "," in key:
            keys = [int(k) for k in key.split(",")]
        elif "-" in key:
            start, end = (int(k) for k in key.split("-"))
            keys = list(range(start, end + 1))
        else:
            keys = [int(key)]
        out.update({k: float(value) for k in keys})
    return out


def latest(table: dict[int, float], at: int) -> float | None:
    """The value of the largest key not above ``at`` (None if there is none)."""
    keys = [k for k in table if k <= at]
    return table[max(keys)] if keys else None


@registry.LR_SCHEDULERS.register("manual", config=ManualConfig)
class ManualSchedule(LRScheduler):
    name = "manual"

    def __init__(self, cfg: ManualConfig, optimizer: torch.optim.Optimizer, inputs: ScheduleInputs) -> None:
        super().__init__(optimizer, inputs)
        self.epoch2lr = parse_manual("--epoch2lr", cfg.epoch2lr)
        self.update2lr = parse_manual("--update2lr", cfg.update2lr)
        first = self.epoch2lr.get(1, self.update2lr.get(1))
        self.lr = first if first is not None else float(inputs.lr[0])
        self._set(self.lr)

    def _set(self, lr: float) -> float:
        set_lr(self.optimizer, lr)
        return lr

    def step_begin_epoch(self, epoch: int) -> float:
        value = latest(self.epoch2lr, epoch)
        self.lr = value if value is not None else self.get_lr()
        return self._set(self.lr)

    def step_update(self, num_updates: int) -> float:
        self.num_updates = num_updates
        value = latest(self.update2lr, num_updates)
        return self._set(value if value is not None else self.get_lr())

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "lr": self.lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.lr = state_dict.get("lr", self.lr)
