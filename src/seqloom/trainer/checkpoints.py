"""Checkpoints in fairseq's layout and naming: what is written when, what is kept, how a run resumes.

A checkpoint is a dict with fairseq's keys: ``args`` (a flat ``argparse.Namespace`` of the run's options,
fairseq's names, which fairseq turns into its config), ``model`` (state dict), ``criterion`` (None),
``optimizer_history`` (``[{criterion_name, optimizer_name, lr_scheduler_state, num_updates}]``),
``task_state``, ``extra_state`` (``train_iterator``, ``val_loss``, ``best``, ``previous_training_time``,
``rng_state``, ``loss_scale``, seqloom's ``train_meters`` (the running epoch summary), with ``--store-ema`` ``ema``
and ``ema_fp32_params``, and a resumed fairseq run's ``metrics``) and ``last_optimizer_state``. Files: ``checkpoint{epoch}.pt``,
``checkpoint_{epoch}_{updates}.pt``, ``checkpoint_best.pt``, ``checkpoint.best_{metric}_{value}.pt``,
``checkpoint_last.pt``; each written once and copied to the other names, atomically.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqloom.checkpoint.io import CheckpointWriteError, copy_checkpoint, save_checkpoint
from seqloom.config.training import CheckpointConfig
from seqloom.data.iterators import IteratorState
from seqloom.optim.build import FAIRSEQ_OPTIMIZER_NAMES
from seqloom.trainer.sharding import full_tensors
from seqloom.trainer.trainer import Trainer
from seqloom.trainer.zero import full_optimizer_state, is_zero

logger = logging.getLogger(__name__)

# fairseq's class names, recorded in optimizer_history so that fairseq accepts the checkpoint on resume
CRITERION_CLASS_NAMES = {
    "cross_entropy": "CrossEntropyCriterion",
    "label_smoothed_cross_entropy": "LabelSmoothedCrossEntropyCriterion",
}
OPTIMIZER_CLASS_NAMES = FAIRSEQ_OPTIMIZER_NAMES  # fairseq's class name of each --optimizer, as checkpoints store it


@dataclass
class BestTracker:
    """The best validation metric so far (fairseq's ``save_checkpoint.best``)."""

    maximize: bool = False
    best: float | None = None

    def is_better(self, a: float, b: float) -> bool:
        return a >= b if self.maximize else a <= b

    def update(self, value: float | None) -> None:
        if value is not None:
            self.best = value if self.best is None else (max if self.maximize else min)(value, self.best)


# options seqloom leaves None to mean "as that other option", where fairseq's field is a plain bool/number
# whose default refers to the other one: fairseq's config refuses None there (``update_epoch_batch_itr=null``)
FOLLOWS = {"update_epoch_batch_itr": "grouped_shuffling", "total_num_update": "max_update"}
# fairseq options of features seqloom lacks (their flags are refused), written with fairseq's defaults: a field
# missing from ``args`` whose default refers to another option turns into True in fairseq if it is a bool
# (fairseq's ``bool("${common.tpu}")``), so e.g. its language-modeling task would ask for a plasma store
ABSENT_FEATURES = {"tpu": False, "model_parallel_size": 1, "use_plasma_view": False, "plasma_path": "/tmp/plasma"}
# options only fairseq's transformer_align defines (its defaults 1 and 4); seqloom's None means "not an alignment
# model", and fairseq's other architectures write no such key: readers that fall back on a default when the key
# is absent (ct2-fairseq-converter's ``getattr(args, "alignment_layer", -1)``) stop on a None
ALIGN_ONLY = ("alignment_heads", "alignment_layer")


def fairseq_args(namespace: argparse.Namespace) -> argparse.Namespace:
    """A copy of the run's namespace that fairseq reads: tuples as fairseq's strings (``'(0.9, 0.98)'``), and
    no None where fairseq's config needs a value (:data:`FOLLOWS`), fairseq's defaults of features seqloom lacks
    (:data:`ABSENT_FEATURES`), no unset alignment options outside alignment models (:data:`ALIGN_ONLY`)."""
    values = {}
    for key, value in vars(namespace).items():
        if isinstance(value, tuple):
            value = "(" + ", ".join(repr(v) for v in value) + ")"
        values[key] = value
    for key, other in FOLLOWS.items():
        if key in values and values[key] is None and values.get(other) is not None:
            values[key] = values[other]
    for key, value in ABSENT_FEATURES.items():
        values.setdefault(key, value)
    for key in ALIGN_ONLY:
        if key in values and values[key] is None:
            del values[key]
    return argparse.Namespace(**values)


def verify_save_dir(save_dir: str) -> None:
    """Creates ``save_dir`` and writes a file into it, as fairseq does before training: an unusable folder (a
    file in the way, no permission, a full disk) is an error now, not after the first epoch's work."""
    from seqloom.checkpoint.io import CheckpointError
    from seqloom.paths import unwritable_reason

    probe = os.path.join(save_dir, f".write-test-{os.getpid()}")
    try:
        os.makedirs(save_dir, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as err:
        raise CheckpointError(
            f"--save-dir {save_dir}: checkpoints cannot be written there ({unwritable_reason(probe, err)}); "
            "choose another folder (or train with --no-save)"
        ) from None


def checkpoint_paths(save_dir: str, pattern: str) -> list[str]:
    """Files in ``save_dir`` matching ``pattern``, sorted by its first group, largest first."""
    if not os.path.isdir(save_dir):
        return []
    matches = filter(None, map(re.compile(pattern).fullmatch, os.listdir(save_dir)))
    # rank by the first group's number (an epoch, an update, a score), then by name
    ranked = sorted(((float(m.group(1)) if m.groups() else 0.0, m.group(0)) for m in matches), reverse=True)
    return [os.path.join(save_dir, name) for _, name in ranked]


def build_state(
    trainer: Trainer, args: argparse.Namespace, extra_state: dict[str, Any], *, save_optimizer_state: bool
) -> dict[str, Any]:
    """The checkpoint dict (fairseq's keys) of the trainer's current state.

    With FSDP or ZeRO every rank must call this: the sharded weights and moments are gathered whole
    (collectives)."""
    state: dict[str, Any] = {
        "args": fairseq_args(args),
        "model": full_tensors(trainer.model.state_dict()),
        "criterion": None,
        "optimizer_history": [
            {
                "criterion_name": CRITERION_CLASS_NAMES.get(
                    getattr(args, "criterion", ""), type(trainer.criterion).__name__
                ),
                "optimizer_name": OPTIMIZER_CLASS_NAMES.get(
                    getattr(args, "optimizer", ""), type(trainer.optimizer).__name__
                ),
                "lr_scheduler_state": trainer.lr_scheduler.state_dict(),
                "num_updates": trainer.num_updates,
            }
        ],
        "task_state": {},
        "extra_state": {"rng_state": torch.get_rng_state(), **extra_state},
    }
    if trainer.options.loss_scaler is not None:
        state["extra_state"]["loss_scale"] = trainer.options.loss_scaler.state_dict()
    if trainer.ema is not None and trainer.ema.started:
        state["extra_state"]["ema"] = trainer.ema.state_dict()
        fp32 = trainer.ema.fp32_state_dict()
        if fp32 is not None:
            state["extra_state"]["ema_fp32_params"] = fp32
    if save_optimizer_state:
        optimizer_state = full_optimizer_state(trainer.optimizer, is_master=trainer.dist.is_master)
        if optimizer_state is not None:
            state["last_optimizer_state"] = full_tensors(optimizer_state)
    return to_cpu(state)


def to_cpu(value: Any) -> Any:
    """Tensors moved to the CPU (as fairseq saves them), containers rebuilt, everything else kept."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_cpu(v) for v in value)
    return value


def _conditions(
    cfg: CheckpointConfig, *, epoch: int, updates: int, end_of_epoch: bool, val_loss: float | None, best: BestTracker
) -> list[str]:
    """The file names to write now, in fairseq's order (the first is written, the rest copied)."""
    sfx = cfg.checkpoint_suffix
    names: list[tuple[str, bool]] = [
        (
            f"checkpoint{epoch}{sfx}.pt",
            end_of_epoch and not cfg.no_epoch_checkpoints and epoch % cfg.save_interval == 0,
        ),
        (
            f"checkpoint_{epoch}_{updates}{sfx}.pt",
            not end_of_epoch and cfg.save_interval_updates > 0 and updates % cfg.save_interval_updates == 0,
        ),
        (
            f"checkpoint_best{sfx}.pt",
            val_loss is not None and best.best is not None and best.is_better(val_loss, best.best),
        ),
    ]
    if val_loss is not None and cfg.keep_best_checkpoints > 0:
        names.append(_keep_best_name(cfg, epoch, updates, val_loss, best))
    names.append((f"checkpoint_last{sfx}.pt", not cfg.no_last_checkpoints))
    return [name for name, cond in names if cond]


def _keep_best_name(
    cfg: CheckpointConfig, epoch: int, updates: int, val_loss: float, best: BestTracker
) -> tuple[str, bool]:
    metric, sfx = cfg.best_checkpoint_metric, cfg.checkpoint_suffix
    existing = checkpoint_paths(cfg.save_dir, rf"checkpoint\.best_{metric}_(\d+\.?\d*){sfx}\.pt")
    worst = best.best
    if existing:
        p = existing[-1] if cfg.maximize_best_checkpoint_metric else existing[0]
        worst = float(p.rsplit("_")[-1].replace(f"{sfx}.pt", ""))
    # fairseq appends a seeded random digit to break ties between equal scores
    rand = np.random.RandomState(int(hash((epoch, updates, val_loss)) % 1e6)).randint(0, cfg.keep_best_checkpoints)
    name = f"checkpoint.best_{metric}_{val_loss:.3f}{rand}{sfx}.pt"
    return name, worst is None or best.is_better(val_loss, worst)


def save_checkpoints(
    cfg: CheckpointConfig,
    trainer: Trainer,
    *,
    args: argparse.Namespace,
    iterator_state: IteratorState,
    end_of_epoch: bool,
    val_loss: float | None,
    best: BestTracker,
    training_time: float,
    writer: AsyncWriter | None = None,
    extra_state: dict[str, Any] | None = None,
) -> list[str]:
    """Writes this moment's checkpoints (rank 0 only) and prunes old ones; returns the paths written (with a
    ``writer``: being written).

    ``extra_state`` adds entries (seqloom's ``train_meters``; a resumed fairseq run's ``metrics``, whose meters may
    hold numpy arrays, kept as found). Under FSDP or ZeRO every rank takes part in gathering the state; rank 0
    alone writes it."""
    best.update(val_loss)
    collective = trainer.dist.world_size > 1 and (trainer.sharded or is_zero(trainer.optimizer))
    if cfg.no_save or not (trainer.dist.is_master or collective):
        return []
    epoch, updates = int(iterator_state["epoch"]), trainer.num_updates
    names = _conditions(cfg, epoch=epoch, updates=updates, end_of_epoch=end_of_epoch, val_loss=val_loss, best=best)
    paths = [os.path.join(cfg.save_dir, n) for n in names]
    write = bool(paths)
    if collective:  # rank 0 decides (it sees the save folder), all gather
        decision = [write]
        torch.distributed.broadcast_object_list(decision, src=0)
        write = bool(decision[0])
    state = None
    if write:
        extra = {"train_iterator": iterator_state, "val_loss": val_loss, "previous_training_time": training_time}
        extra.update(extra_state or {})
        if best.best is not None:
            extra["best"] = best.best
        state = build_state(trainer, args, extra, save_optimizer_state=not cfg.no_save_optimizer_state)
    if not trainer.dist.is_master:
        return []

    def write_and_prune() -> None:
        if state is not None:
            start = time.perf_counter()
            try:
                write_all(state, paths)
            except CheckpointWriteError as err:
                if not handle_write_error(cfg, err):
                    raise
                return
            logger.info("Saved checkpoint %s (epoch %d @ %d updates, score %s) (writing took %.3f seconds)",
                        paths[0], epoch, updates, val_loss, time.perf_counter() - start)  # fmt: skip
        prune_checkpoints(cfg, end_of_epoch=end_of_epoch)

    if writer is None:
        write_and_prune()
    else:  # training goes on while a thread writes a snapshot (copies, not the live tensors)
        state = snapshot(state) if state is not None else None
        writer.submit(write_and_prune)
    return paths


def snapshot(value: Any) -> Any:
    """A copy of a checkpoint dict whose tensors own their memory (CPU tensors of ``to_cpu`` may be live ones)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snapshot(v) for v in value]
    if isinstance(value, tuple):
        return tuple(snapshot(v) for v in value)
    return value


class AsyncWriter:
    """``--write-checkpoints-asynchronously``: one background thread writes checkpoints (and prunes old ones).

    At most one write is pending: the next save, and the end of training (:meth:`wait`), wait for it, and an
    error in the writer is raised there. Files are still written atomically, so a crash mid-write leaves the
    previous checkpoints intact."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending: Future[None] | None = None

    def submit(self, job: Callable[[], None]) -> None:
        self.wait()
        self._pending = self._pool.submit(job)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


def write_all(state: dict[str, Any], paths: list[str]) -> None:
    """Writes ``state`` to the first path and copies it to the others, each atomically."""
    os.makedirs(os.path.dirname(paths[0]) or ".", exist_ok=True)
    save_checkpoint(state, paths[0])
    for path in paths[1:]:
        copy_checkpoint(paths[0], path)


def handle_write_error(cfg: CheckpointConfig, err: CheckpointWriteError) -> bool:
    """Says what a failed save means for the run (the checkpoint_last.pt before it is intact): raises one
    clear :class:`CheckpointWriteError` that stops training, or with ``--continue-on-save-error`` logs it and
    returns True (training goes on; the next save tries again)."""
    last = os.path.join(cfg.save_dir, f"checkpoint_last{cfg.checkpoint_suffix}.pt")
    before = (
        f"the previous {os.path.basename(last)} is intact" if os.path.exists(last) else "no checkpoint was saved before"
    )
    message = f"{err.reason} writing {err.path}; {before}"
    if cfg.continue_on_save_error:
        logger.error("%s; training goes on without this checkpoint (--continue-on-save-error)", message)
        return True
    raise CheckpointWriteError(
        f"{message}; training stopped (make room and run the same command to resume, or add "
        "--continue-on-save-error to train on without saving while saves fail)",
        path=err.path,
        reason=err.reason,
        errno=err.errno,
    ) from None


def prune_checkpoints(cfg: CheckpointConfig, *, end_of_epoch: bool) -> None:
    """``--keep-interval-updates``, ``--keep-last-epochs``, ``--keep-best-checkpoints``."""
    sfx = cfg.checkpoint_suffix
    doomed: list[str] = []
    if not end_of_epoch and cfg.keep_interval_updates > 0:
        found = checkpoint_paths(cfg.save_dir, rf"checkpoint_\d+_(\d+){sfx}\.pt")
        keep = cfg.keep_interval_updates_pattern
        if keep > 0:  # multiples of the pattern are never deleted (nor counted)
            found = [p for p in found if _updates_of(p) % keep != 0]
        doomed += found[cfg.keep_interval_updates :]
    if cfg.keep_last_epochs > 0:
        doomed += checkpoint_paths(cfg.save_dir, rf"checkpoint(\d+){sfx}\.pt")[cfg.keep_last_epochs :]
    if cfg.keep_best_checkpoints > 0:
        found = checkpoint_paths(cfg.save_dir, rf"checkpoint\.best_{cfg.best_checkpoint_metric}_(\d+\.?\d*){sfx}\.pt")
        if not cfg.maximize_best_checkpoint_metric:
            found = found[::-1]
        doomed += found[cfg.keep_best_checkpoints :]
    for path in doomed:
        if os.path.lexists(path):
            os.remove(path)


def _updates_of(path: str) -> int:
    m = re.search(r"checkpoint_\d+_(\d+)", os.path.basename(path))
    return int(m.group(1)) if m else 0
