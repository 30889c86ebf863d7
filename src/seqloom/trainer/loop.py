"""The epoch loop of ``seqloom train``: updates, interval logs, validation, checkpoints, stopping.

Its decisions (when to validate, save, stop) follow fairseq's ``train.py`` one for one, so the same flags
give the same schedule of validations and checkpoint files. Data comes from two callables, so the loop
knows nothing about tasks: ``train_batches(epoch)`` and ``valid_batches(subset)`` return
:class:`~seqloom.data.iterators.EpochBatchIterator`.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from seqloom.config.common import CommonConfig
from seqloom.config.training import CheckpointConfig, DatasetConfig, OptimizationConfig
from seqloom.data.iterators import EpochBatchIterator
from seqloom.trainer.checkpoints import AsyncWriter, BestTracker, save_checkpoints
from seqloom.trainer.distributed import all_gather_lists, all_reduce_sums
from seqloom.trainer.meters import Meter
from seqloom.trainer.progress import Progress
from seqloom.trainer.trainer import StepResult, Trainer, ValidHook

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class LoopConfigs:
    """The option groups the loop reads."""

    common: CommonConfig
    dataset: DatasetConfig
    optimization: OptimizationConfig
    checkpoint: CheckpointConfig


@dataclass(frozen=True)
class AfterUpdate:
    """What the loop does after an update: stop (for these reasons), save a checkpoint, validate."""

    stop_reasons: tuple[str, ...]
    save: bool
    validate: bool


def _multiple(count: int, every: int) -> bool:
    """``count`` is a positive multiple of ``every`` (0 or less: never)."""
    return every > 0 and count > 0 and count % every == 0


def plan_after_update(cfg: LoopConfigs, *, updates: int, epoch: int, end_of_epoch: bool, hours: float) -> AfterUpdate:
    """The schedule of fairseq's train.py, flag for flag, so that the same flags save and validate at the same
    updates: a stop limit reached saves and validates; ``--save-interval[-updates]`` saves (a mid-epoch save
    validates too); ``--validate-interval[-updates]`` validates; nothing validates before
    ``--validate-after-updates`` or with ``--disable-validation``."""
    opt, ckpt, data = cfg.optimization, cfg.checkpoint, cfg.dataset
    reasons = []
    if opt.max_update and updates >= opt.max_update:
        reasons.append(f"{updates} updates reached --max-update {opt.max_update}")
    if 0 < opt.stop_time_hours < hours:
        reasons.append(f"{hours:.3f} hours of training passed --stop-time-hours {opt.stop_time_hours:g}")
    stopping = bool(reasons)
    validation_open = not data.disable_validation and updates >= data.validate_after_updates
    at_epoch_save = end_of_epoch and epoch % ckpt.save_interval == 0
    at_update_save = _multiple(updates, ckpt.save_interval_updates) and updates >= data.validate_after_updates
    save = at_epoch_save or at_update_save or stopping
    validate = validation_open and (
        stopping
        or (save and not end_of_epoch)
        or (end_of_epoch and epoch % data.validate_interval == 0)
        or _multiple(updates, data.validate_interval_updates)
    )
    return AfterUpdate(tuple(reasons), save, validate)


@dataclass
class EarlyStopper:
    """``--patience``: stop after N validations without improvement."""

    patience: int
    maximize: bool
    best: float | None = None
    runs: int = 0

    def should_stop(self, value: float | None) -> bool:
        if value is None or self.patience <= 0:
            return False
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best, self.runs = value, 0
            return False
        self.runs += 1
        if self.runs >= self.patience:
            logger.info("stopping: no better validation figure in the last %d validations (--patience)", self.patience)
            return True
        return False


@dataclass
class TrainingLoop:
    """Runs epochs until a stop condition; ``history`` records every update's stats (tests read it)."""

    trainer: Trainer
    cfg: LoopConfigs
    args: argparse.Namespace
    train_batches: Callable[[int], EpochBatchIterator]
    valid_batches: Callable[[str], EpochBatchIterator]
    progress: Progress
    best: BestTracker = field(default_factory=BestTracker)
    previous_training_time: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    valid_hook: ValidHook | None = None  # extra per-batch validation sums (the task's --eval-bleu)
    valid_reduce: Callable[[Mapping[str, float]], dict[str, float]] | None = None  # figures from those sums
    carried_state: dict[str, Any] = field(default_factory=dict)  # restored extra_state kept in every checkpoint
    _interval: Meter | None = field(default=None, init=False, repr=False)  # train_inner's meter, across epochs
    _epoch_meter: Meter | None = field(default=None, init=False, repr=False)  # the epoch summary's meter
    # the meters a checkpoint saved mid-epoch (``extra_state["train_meters"]``), for the epoch it resumes
    resumed_meters: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.best.maximize = self.cfg.checkpoint.maximize_best_checkpoint_metric
        self.stopper = EarlyStopper(self.cfg.checkpoint.patience, self.cfg.checkpoint.maximize_best_checkpoint_metric)
        self._warned_metric = False
        self.start = time.perf_counter()
        self.writer = AsyncWriter() if self.cfg.checkpoint.write_checkpoints_asynchronously else None

    def training_time(self) -> float:
        return self.previous_training_time + time.perf_counter() - self.start

    def run(self, epoch_itr: EpochBatchIterator) -> None:
        try:
            self._run(epoch_itr)
        except BaseException:
            if self.writer is not None:  # let a pending write finish, without hiding the error that stopped training
                try:
                    self.writer.wait()
                except Exception:
                    logger.exception("the last asynchronous checkpoint write failed too")
            raise
        if self.writer is not None:
            self.writer.wait()  # the last checkpoint is on disk before training returns

    def _run(self, epoch_itr: EpochBatchIterator) -> None:
        max_epoch = self.cfg.optimization.max_epoch or math.inf
        while epoch_itr.next_epoch_idx <= max_epoch:
            if self.trainer.lr <= self.cfg.optimization.stop_min_lr:
                logger.info("stopping: the learning rate %g is at or below --stop-min-lr %g", self.trainer.lr,
                            self.cfg.optimization.stop_min_lr)  # fmt: skip
                break
            valid_losses, should_stop = self.train_epoch(epoch_itr)
            if should_stop:
                break
            self.trainer.lr_step(epoch_itr.epoch, valid_losses[0])
            epoch_itr = self._next_iterator(epoch_itr)
        logger.info("%s", self.done_message())

    def done_message(self) -> str:
        """fairseq's "done training in T seconds" (T counts the runs this one resumed, as the checkpoint's wall
        time does); a resumed run also says what this run took."""
        total = self.training_time()
        if self.previous_training_time <= 0:
            return f"done training in {total:.1f} seconds"
        this_run = time.perf_counter() - self.start
        before = self.previous_training_time
        return f"done training in {total:.1f} seconds ({this_run:.1f} in this run, {before:.1f} before it resumed)"

    def _next_iterator(self, epoch_itr: EpochBatchIterator) -> EpochBatchIterator:
        """The next epoch's iterator: the same batches, or a new data folder's for a ``:``-separated DATA."""
        fresh = self.train_batches(epoch_itr.next_epoch_idx)
        if fresh is not epoch_itr:
            fresh.load_state_dict({"epoch": epoch_itr.next_epoch_idx, "iterations_in_epoch": 0})
        return fresh

    def update_freq(self, epoch: int) -> int:
        freqs = self.cfg.optimization.update_freq
        return freqs[epoch - 1] if epoch <= len(freqs) else freqs[-1]

    def train_epoch(self, epoch_itr: EpochBatchIterator) -> tuple[list[float | None], bool]:
        itr = epoch_itr.next_epoch_itr(shuffle=epoch_itr.next_epoch_idx > self.cfg.dataset.curriculum)
        epoch = epoch_itr.epoch
        self.trainer.lr_step_begin_epoch(epoch)
        logger.info("begin training epoch %d", epoch)
        # fairseq's train_inner meters run on across epochs (only a log line resets them); the epoch's own restart
        if self._interval is None:
            self._interval = self._meter()
        interval, whole = self._interval, self._meter()
        saved, self.resumed_meters = self.resumed_meters, None
        if saved is not None and saved.get("epoch") == epoch:  # resumed mid-epoch: count the updates before too
            whole.load_state_dict(saved["train"])
            interval.load_state_dict(saved["train_inner"])
        self._epoch_meter = whole
        valid_losses: list[float | None] = [None]
        should_stop = False
        freq = self.update_freq(epoch)
        whole_only = self.cfg.dataset.skip_remainder_batch  # fairseq's grouped iterator drops a partial group
        groups = len(itr) // freq if whole_only else -(-len(itr) // freq)
        for samples in itr.take_groups(freq, whole_only=whole_only):
            result = self.trainer.train_step(samples)
            self.progress.advance(epoch, len(itr), len(samples))
            if not result.skipped:
                # progress in updates (groups of --update-freq batches), as fairseq's grouped iterator counts
                self._record(result, interval, whole, epoch, -(-itr.n // freq), groups)
            valid_losses, should_stop = self.validate_and_save(epoch_itr, end_of_epoch=not itr.has_next())
            if should_stop:
                break
        logger.info("end of epoch %d (average epoch stats below)", epoch)
        self.progress.print(self._train_stats(whole), tag="train", step=self.trainer.num_updates, epoch=epoch)
        return valid_losses, should_stop

    def _record(self, result: StepResult, interval: Meter, whole: Meter, epoch: int, i: int, size: int) -> None:
        for meter in (interval, whole):
            meter.add(result.logging_output, gnorm=result.gnorm, clipped=result.clipped)
            meter.busy_seconds += result.seconds
        updates = self.trainer.num_updates
        one = self._meter()
        one.add(result.logging_output, gnorm=result.gnorm)
        self.history.append({"num_updates": updates, **one.stats(), "gnorm": result.gnorm, "lr": result.lr})
        if updates % self.cfg.common.log_interval == 0:
            self.progress.log(self._train_stats(interval), tag="train_inner", step=updates, epoch=epoch, i=i, size=size)
            interval.reset()

    def _meter(self) -> Meter:
        return Meter(reduce=getattr(self.trainer.criterion, "reduce_metrics", None))

    def _train_stats(self, meter: Meter) -> dict[str, float]:
        stats = meter.train_stats(
            num_updates=self.trainer.num_updates,
            lr=self.trainer.lr,
            clip_norm=self.cfg.optimization.clip_norm,
            wall=self.training_time(),
        )
        if self.trainer.ema is not None:  # fairseq logs it last
            stats["ema_decay"] = round(self.trainer.ema.decay, 5)
        return stats

    def validate_and_save(
        self, epoch_itr: EpochBatchIterator, *, end_of_epoch: bool
    ) -> tuple[list[float | None], bool]:
        """After an update: validates and saves when due; returns the validation figures and whether to stop."""
        epoch = epoch_itr.epoch
        plan = plan_after_update(self.cfg, updates=self.trainer.num_updates, epoch=epoch, end_of_epoch=end_of_epoch,
                                 hours=self.training_time() / 3600)  # fmt: skip
        for reason in plan.stop_reasons:
            logger.info("stopping: %s", reason)
        figures: list[float | None] = self.validate(epoch) if plan.validate else [None]
        out_of_patience = self.stopper.should_stop(figures[0])  # it follows every figure, stopping or not
        stop = bool(plan.stop_reasons) or out_of_patience
        if plan.save or stop:
            save_checkpoints(
                self.cfg.checkpoint,
                self.trainer,
                args=self.args,
                iterator_state=epoch_itr.state_dict(),
                end_of_epoch=end_of_epoch,
                val_loss=figures[0],
                best=self.best,
                training_time=self.training_time(),
                writer=self.writer,
                extra_state={**self.carried_state, "train_meters": self._meter_state(epoch)},
            )
        return figures, stop

    def _meter_state(self, epoch: int) -> dict[str, Any]:
        """The running epoch and interval meters, saved so that a run resumed mid-epoch summarises the whole
        epoch (fairseq saves its meters under ``metrics``; this key is seqloom's own, which fairseq ignores)."""
        empty = self._meter()
        return {
            "epoch": epoch,
            "train": (self._epoch_meter or empty).state_dict(),
            "train_inner": (self._interval or empty).state_dict(),
        }

    def validate(self, epoch: int) -> list[float | None]:
        """Validates on every ``--valid-subset``; returns the ``--best-checkpoint-metric`` of each."""
        losses: list[float | None] = []
        if self.cfg.dataset.fixed_validation_seed is not None:
            torch.manual_seed(self.cfg.dataset.fixed_validation_seed)
        for subset in self.cfg.dataset.valid_subset.split(","):
            logger.info('begin validation on "%s" subset', subset)
            stats = self.validate_subset(subset)
            stats["num_updates"] = self.trainer.num_updates
            metric = self.cfg.checkpoint.best_checkpoint_metric
            value = stats.get(metric)
            if value is None and not self._warned_metric:  # fairseq fails with a KeyError here
                self._warned_metric = True
                logger.warning("--best-checkpoint-metric %s: validation on '%s' reports no such figure (it reports "
                               "%s): no checkpoint_best.pt is written and --patience has nothing to follow", metric,
                               subset, ", ".join(sorted(k for k in stats if k != "num_updates")))  # fmt: skip
            if value is not None and self.best.best is not None:
                stats[f"best_{metric}"] = (max if self.best.maximize else min)(self.best.best, value)
            self.progress.print(
                stats, tag=subset, step=self.trainer.num_updates, epoch=epoch, prefix=f"valid on '{subset}' subset"
            )
            losses.append(value)
        return losses

    def validate_subset(self, subset: str) -> dict[str, Any]:
        meter = self._meter()
        # the split stays at the epoch its iterator was built for (1): the same masks/noise at every validation
        itr = self.valid_batches(subset).next_epoch_itr(shuffle=False, set_dataset_epoch=False)
        for i, sample in enumerate(itr):
            max_steps = self.cfg.dataset.max_valid_steps
            if max_steps is not None and i > max_steps:
                break
            out = self.trainer.valid_step(sample, self.valid_hook)
            if out:
                meter.add(out)
        steps = all_reduce_sums({"__steps": float(meter.steps)}, self.trainer.dist.device)["__steps"]
        meter.sums = all_reduce_sums(meter.sums, self.trainer.dist.device)
        meter.lists = all_gather_lists(meter.lists)
        meter.steps = int(steps)
        stats = meter.stats(ups=False)
        if self.valid_reduce is not None:
            stats.update(self.valid_reduce(meter.sums))
        return stats
