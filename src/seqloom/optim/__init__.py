"""Optimizers and learning-rate schedules, registered under fairseq's names and flags."""

from seqloom.optim.build import (
    FAIRSEQ_OPTIMIZER_NAMES,
    build_optimizer,
    export_optimizer_state,
    get_lr,
    import_optimizers,
    load_optimizer_state,
    set_lr,
)
from seqloom.optim.lr_scheduler import LRScheduler, ScheduleInputs, build_lr_scheduler

__all__ = [
    "FAIRSEQ_OPTIMIZER_NAMES",
    "LRScheduler",
    "ScheduleInputs",
    "build_lr_scheduler",
    "build_optimizer",
    "export_optimizer_state",
    "get_lr",
    "import_optimizers",
    "load_optimizer_state",
    "set_lr",
]
