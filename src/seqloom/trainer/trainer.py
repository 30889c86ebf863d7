"""One optimizer update at a time, knowing nothing of models or tasks beyond the criterion contract.

``criterion(model, sample) -> (loss, sample_size, logging_output)``: ``loss`` is summed (not averaged)
over the batch, ``sample_size`` is what it is divided by (target tokens, or sentences with
``--sentence-avg``), and ``logging_output`` holds sums (``loss``, ``nll_loss``, ``ntokens``, ...).

An update (``train_step``) runs forward/backward on each of its ``--update-freq`` batches (gradient sync
only on the last one under DDP), sums gradients, divides them by the total sample size over all ranks,
clips them, and steps the optimizer. Each update first seeds torch's RNG with ``seed + num_updates``
(as fairseq does), so dropout depends only on the update number and a resumed run repeats the
uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from seqloom.trainer.distributed import DistInfo, all_reduce_sums
from seqloom.trainer.ema import ExponentialMovingAverage
from seqloom.trainer.meters import sum_logging_outputs
from seqloom.trainer.precision import LossScaler, autocast
from seqloom.trainer.sharding import is_sharded, sharded_grad_norm

logger = logging.getLogger(__name__)

# extra validation statistics: (model, sample) -> sums to add to the logging output
ValidHook = Callable[[nn.Module, dict[str, Any]], dict[str, float]]


@dataclass(kw_only=True)
class TrainerOptions:
    """The knobs of an update."""

    seed: int = 1
    clip_norm: float = 0.0
    autocast_dtype: torch.dtype | None = None
    loss_scaler: LossScaler | None = None
    find_unused_parameters: bool = False
    # DDP's own knobs (fairseq passes them to DistributedDataParallel too)
    bucket_cap_mb: int = 25
    gradient_as_bucket_view: bool = False
    broadcast_buffers: bool = False
    compile: bool = False  # --compile: torch.compile the training forward (dynamic shapes)
    overflow_retries: int = 0  # --amp: re-run an overflowing update this many times at the lowered scale
    empty_cache_freq: int = 0  # --empty-cache-freq: release the CUDA caching allocator's free blocks every N updates


@dataclass(kw_only=True)
class StepResult:
    """What one update did; ``logging_output`` is summed over its batches and all ranks."""

    logging_output: dict[str, float]
    sample_size: float
    gnorm: float
    clipped: bool
    skipped: bool
    lr: float
    seconds: float


class Schedule(Protocol):
    """The learning-rate schedule as the trainer drives it (:class:`seqloom.optim.lr_scheduler.LRScheduler`)."""

    def step_update(self, num_updates: int) -> float: ...

    def step(self, epoch: int, val_loss: float | None = None) -> float: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


class ModuleProxyDDP(nn.parallel.DistributedDataParallel):
    """DDP whose unknown attributes come from the wrapped model (criterions call
    ``model.get_normalized_probs``), as fairseq's ``ModuleProxyWrapper`` does."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def move_to_device(sample: Any, device: torch.device) -> Any:
    if isinstance(sample, torch.Tensor):
        return sample.to(device, non_blocking=True)
    if isinstance(sample, dict):
        return {k: move_to_device(v, device) for k, v in sample.items()}
    if isinstance(sample, list):
        return [move_to_device(v, device) for v in sample]
    return sample


def grad_norm(params: list[nn.Parameter]) -> torch.Tensor:
    """The L2 norm of all gradients together (0 when there are none)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def should_empty_cache(num_updates: int, freq: int) -> bool:
    """fairseq's ``--empty-cache-freq`` rule: once 1, 1 + freq, 1 + 2 * freq, ... updates are done (0: never)."""
    return freq > 0 and (num_updates + freq - 1) % freq == 0


def scale_grads(params: list[nn.Parameter], factor: float) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    if grads and factor != 1.0:
        torch._foreach_mul_(grads, factor)


class Trainer:
    """Holds the model, criterion, optimizer and LR schedule; counts updates."""

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Schedule,
        *,
        dist: DistInfo,
        options: TrainerOptions,
    ) -> None:
        self.dist = dist
        self.options = options
        # a sharded model is placed already (and --cpu-offload keeps its shards in CPU memory)
        self.model = model if is_sharded(model) else model.to(dist.device)
        self.criterion = criterion.to(dist.device)
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.wrapped: nn.Module = self.model
        self.sharded = is_sharded(self.model)  # --ddp-backend fully_sharded: FSDP already wraps the model
        if dist.world_size > 1 and not self.sharded:
            self.wrapped = ModuleProxyDDP(
                self.model,
                device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
                find_unused_parameters=options.find_unused_parameters,
                broadcast_buffers=options.broadcast_buffers,
                bucket_cap_mb=options.bucket_cap_mb,
                gradient_as_bucket_view=options.gradient_as_bucket_view,
            )
        if options.compile:
            self.wrapped = torch.compile(self.wrapped, dynamic=True)  # type: ignore[assignment]
        self.num_updates = 0
        self.ema: ExponentialMovingAverage | None = None  # --store-ema: stepped after every update
        self._dummy: dict[str, Any] | None = None
        self._valid_dummy: dict[str, Any] | None = None
        self.lr = float(self.lr_scheduler.step_update(0))

    def set_num_updates(self, num_updates: int) -> None:
        self.num_updates = num_updates
        self.lr = float(self.lr_scheduler.step_update(num_updates))

    def _forward_backward(self, sample: dict[str, Any], *, sync: bool) -> tuple[float, dict[str, Any]]:
        dummy = not sample
        if dummy:  # an empty shard batch: run the last real one with zero weight so DDP stays in step
            if self._dummy is None:
                return 0.0, {}
            sample = self._dummy
        else:
            sample = move_to_device(sample, self.dist.device)
            self._dummy = sample
        no_sync = getattr(self.wrapped, "no_sync", None)
        if self.sharded:  # FSDP: reduce-scatter the gradients on the update's last batch only
            self.model.set_requires_gradient_sync(sync)  # type: ignore[operator]
            no_sync = None
        ctx = contextlib.nullcontext() if sync or no_sync is None else no_sync()
        with ctx:
            with autocast(self.dist.device, self.options.autocast_dtype):
                loss, sample_size, logging_output = self.criterion(self.wrapped, sample)
            if dummy:
                loss = loss * 0.0
            scaler = self.options.loss_scaler
            (loss * scaler.scale if scaler is not None else loss).backward()
        if dummy:
            return 0.0, {}
        return float(sample_size), logging_output

    def train_step(self, samples: list[dict[str, Any]]) -> StepResult:
        """One update over ``samples`` (``--update-freq`` batches); with ``overflow_retries`` (``--amp``) an
        update whose gradients overflow is run again at the lowered loss scale before it is skipped."""
        for attempt in range(self.options.overflow_retries + 1):
            result = self._train_step_once(samples)
            if not result.skipped or attempt == self.options.overflow_retries:
                break
            logger.info("AMP: retrying the same batch at loss scale %g", self.options.loss_scaler.scale)  # type: ignore[union-attr]
        if result.skipped and self.options.overflow_retries:
            logger.info("AMP: skipping this batch")
        return result

    def _train_step_once(self, samples: list[dict[str, Any]]) -> StepResult:
        start = time.perf_counter()
        if should_empty_cache(self.num_updates, self.options.empty_cache_freq) and self.dist.device.type == "cuda":
            torch.cuda.empty_cache()
        torch.manual_seed(self.options.seed + self.num_updates)
        self.model.train()
        self.criterion.train()
        self.optimizer.zero_grad(set_to_none=True)
        outputs = []
        for i, sample in enumerate(samples):
            sample_size, log = self._forward_backward(sample, sync=i == len(samples) - 1)
            outputs.append({**log, "sample_size": sample_size})
        totals = all_reduce_sums(sum_logging_outputs(outputs), self.dist.device)
        sample_size = totals.get("sample_size", 0.0)
        return self._update(totals, sample_size, start)

    def _update(self, totals: dict[str, float], sample_size: float, start: float) -> StepResult:
        scaler = self.options.loss_scaler
        scale = scaler.scale if scaler is not None else 1.0
        # DDP averaged the gradients over ranks: undo that, then normalize by the global sample size
        scale_grads(self.params, self.dist.world_size / ((sample_size or 1.0) * scale))
        norm = self._grad_norm()
        clip = self.options.clip_norm
        finite = bool(torch.isfinite(norm))
        if not finite:
            if scaler is None:
                raise FloatingPointError(
                    f"gradients are NaN/Inf at update {self.num_updates + 1}: lower --lr, set --clip-norm, or use "
                    "--fp16/--amp with dynamic loss scaling"
                )
            scaler.update(overflow=True)
            self.optimizer.zero_grad(set_to_none=True)
            return StepResult(
                logging_output=totals,
                sample_size=sample_size,
                gnorm=0.0,
                clipped=False,
                skipped=True,
                lr=self.lr,
                seconds=time.perf_counter() - start,
            )
        gnorm = float(norm)
        clipped = clip > 0 and gnorm > clip
        if clipped:
            scale_grads(self.params, clip / (gnorm + 1e-6))
        self.optimizer.step()
        if scaler is not None:
            scaler.update(overflow=False)
        self.set_num_updates(self.num_updates + 1)
        if self.ema is not None:
            self.ema.step(self.model, self.num_updates)
        return StepResult(
            logging_output=totals,
            sample_size=sample_size,
            gnorm=gnorm,
            clipped=clipped,
            skipped=False,
            lr=self.lr,
            seconds=time.perf_counter() - start,
        )

    def _grad_norm(self) -> torch.Tensor:
        if self.sharded:
            grads = [p.grad for p in self.params if p.grad is not None]
            return sharded_grad_norm(grads) if grads else torch.tensor(0.0)
        return grad_norm(self.params)

    @torch.no_grad()
    def valid_step(self, sample: dict[str, Any], extra: ValidHook | None = None) -> dict[str, Any]:
        """The criterion's logging output for one validation batch (eval mode, no gradients), plus the
        sums ``extra(model, sample)`` adds (e.g. BLEU counts)."""
        self.model.eval()
        self.criterion.eval()
        if not sample:
            if self.sharded and self._valid_dummy is not None:  # FSDP's gathers need every rank's forward
                with autocast(self.dist.device, self.options.autocast_dtype):
                    self.criterion(self.model, self._valid_dummy)
            return {}
        sample = move_to_device(sample, self.dist.device)
        self._valid_dummy = sample
        with autocast(self.dist.device, self.options.autocast_dtype):
            _, sample_size, logging_output = self.criterion(self.model, sample)
            more = extra(self.model, sample) if extra is not None else {}
        return {**logging_output, "sample_size": float(sample_size), **more}

    def lr_step_begin_epoch(self, epoch: int) -> None:
        """fairseq's epoch-start hook: the schedule may depend on the epoch (``fixed``)."""
        begin = getattr(self.lr_scheduler, "step_begin_epoch", None)
        if begin is not None:
            begin(epoch)
        self.lr = float(self.lr_scheduler.step_update(self.num_updates))

    def lr_step(self, epoch: int, val_loss: float | None) -> None:
        """fairseq's end-of-epoch hook (``reduce_lr_on_plateau`` reads the validation loss)."""
        self.lr_scheduler.step(epoch, val_loss)
        self.lr = float(self.lr_scheduler.step_update(self.num_updates))
