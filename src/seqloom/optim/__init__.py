"""Optimizers and learning-rate schedules, registered under fairseq's names and flags.

How a trainer drives them (fairseq's order)::

    opt = build_optimizer(name, opt_cfg, model.parameters(), lr=optimization.lr[0])
    sched = build_lr_scheduler(sched_name, sched_cfg, opt, lr=optimization.lr,
                               max_update=optimization.max_update,
                               maximize_best_checkpoint_metric=checkpoint.maximize_best_checkpoint_metric)
    # resume: load_optimizer_state(opt, ckpt["last_optimizer_state"]) *before*
    #         sched.load_state_dict(ckpt["optimizer_history"][-1]["lr_scheduler_state"])
    for each epoch:
        sched.step_begin_epoch(epoch)                # then every update:
        opt.step(); num_updates += 1; lr = sched.step_update(num_updates)
        sched.step(epoch, valid_metric)              # after validation (fairseq: the rounded metric)
    # save: export_optimizer_state(opt), sched.state_dict(), FAIRSEQ_OPTIMIZER_NAMES[name]
"""

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
