"""Optimizers and learning-rate schedules, registered under fairseq's names and flags."""

from seqloom.optim.build import build_optimizer, get_lr, import_optimizers, load_optimizer_state, set_lr
from seqloom.optim.lr_scheduler import LRScheduler, ScheduleInputs, build_lr_scheduler

__all__ = [
    "LRScheduler",
    "ScheduleInputs",
    "build_lr_scheduler",
    "build_optimizer",
    "get_lr",
    "import_optimizers",
    "load_optimizer_state",
    "set_lr",
]
