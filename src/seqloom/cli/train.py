"""``seqloom train DATA --arch ... --optimizer ...``: fairseq-train's command line, fairseq's checkpoints.

Several processes: ``torchrun --nproc_per_node N -m seqloom.train ...`` (gloo on the CPU, NCCL on GPUs);
only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from seqloom.checkpoint.io import CheckpointError
from seqloom.cli.build import build_criterion, build_model, build_task, count_parameters
from seqloom.cli.parser import ParsedArgs, parse_args
from seqloom.cli.specs import TRAIN as SPEC
from seqloom.config.training import DatasetConfig, EMAConfig
from seqloom.data.iterators import EpochBatchIterator
from seqloom.logs import setup_logging
from seqloom.optim import build_lr_scheduler, build_optimizer
from seqloom.tasks.base import BatchingOptions, require_batches
from seqloom.trainer import distributed
from seqloom.trainer.checkpoints import verify_save_dir
from seqloom.trainer.distributed import DistInfo
from seqloom.trainer.ema import ExponentialMovingAverage, load_ema_weights
from seqloom.trainer.loop import LoopConfigs, TrainingLoop
from seqloom.trainer.precision import LossScaler, autocast_dtype, default_scale_window
from seqloom.trainer.progress import Progress, resolve_log_format
from seqloom.trainer.restore import Restored, restore
from seqloom.trainer.save_dir import SaveDirLock, remove_stale_temp_files
from seqloom.trainer.sharding import shard_model
from seqloom.trainer.trainer import Trainer, TrainerOptions
from seqloom.trainer.zero import shard_optimizer

logger = logging.getLogger("seqloom.cli.train")


def check_options(parsed: ParsedArgs) -> None:
    chosen, ds, opt = parsed.components, parsed["dataset"], parsed["optimization"]
    ddp, ema = parsed["distributed_training"], parsed["ema"]
    if ds.max_tokens is None and ds.batch_size is None:
        raise SystemExit("seqloom train: give a batch size with --max-tokens or --batch-size")
    if chosen.optimizer is None:
        raise SystemExit("seqloom train: --optimizer is required (e.g. --optimizer adam)")
    if any(n < 1 for n in opt.update_freq) or ema.ema_update_freq < 1:
        flag, value = ("--update-freq", ",".join(map(str, opt.update_freq))) if any(n < 1 for n in opt.update_freq) \
            else ("--ema-update-freq", ema.ema_update_freq)  # fmt: skip
        raise SystemExit(f"seqloom train: {flag} {value}: every value must be at least 1 (batches per update)")
    if chosen.arch is None:
        raise SystemExit("seqloom train: --arch is required (e.g. --arch transformer)")
    eval_bleu = bool(getattr(parsed.get("task"), "eval_bleu", False))  # an option of the translation tasks only
    if parsed["checkpoint"].best_checkpoint_metric == "bleu" and not eval_bleu and not ds.disable_validation:
        raise SystemExit("seqloom train: --best-checkpoint-metric bleu needs --eval-bleu (validation computes BLEU "
                         "only then); add it, or keep the default metric (loss)")  # fmt: skip
    for flag, limit in (("--max-epoch", opt.max_epoch), ("--max-update", opt.max_update)):
        if limit is not None and limit < 0:  # fairseq would stop before the first update, silently
            raise SystemExit(f"seqloom train: {flag} {limit}: must be at least 0 (0 means no limit)")
    sharded = ddp.ddp_backend == "fully_sharded"
    unsupported = {  # accepted for fairseq's command lines; refused, not silently ignored, when they would matter
        f"--ddp-backend {ddp.ddp_backend}": ddp.ddp_backend == "slowmo",
        # generation runs a different number of decoder steps on each rank; FSDP's gathers need equal ones
        "--eval-bleu with --ddp-backend fully_sharded": sharded and eval_bleu,
        "--store-ema with --ddp-backend fully_sharded": sharded and ema.store_ema,
        "--zero-sharding os with --ddp-backend fully_sharded": sharded and ddp.zero_sharding == "os",
    }
    named = [flag for flag, used in unsupported.items() if used]
    if named:
        raise SystemExit(f"seqloom train: {', '.join(named)} is not supported yet; leave it at its default "
                         "(--ddp-backend: c10d/pytorch_ddp for DDP, fully_sharded for FSDP)")  # fmt: skip
    if ddp.ddp_backend in ("legacy_ddp", "no_c10d"):
        logger.warning("--ddp-backend %s: running PyTorch DistributedDataParallel (c10d) instead", ddp.ddp_backend)
    if ds.max_tokens_valid is None:
        parsed.set(max_tokens_valid=ds.max_tokens)
    if ds.batch_size_valid is None:
        parsed.set(batch_size_valid=ds.batch_size)


def check_valid_subsets(data: str | None, cfg: DatasetConfig) -> None:
    """fairseq's guard: validation files ``valid<N>.*`` in a data folder that ``--valid-subset`` leaves out are
    an error (they were probably meant to count), unless combined or explicitly ignored."""
    if cfg.ignore_unused_valid_subsets or cfg.combine_valid_subsets or not data:
        return
    found = set()
    for folder in data.split(":"):
        if os.path.isdir(folder):
            found |= {name.split(".")[0] for name in os.listdir(folder) if re.match(r"valid\d+\.", name)}
    unused = sorted(found - set(cfg.valid_subset.split(",")))
    if unused:
        raise SystemExit(f"seqloom train: validation subsets {', '.join(unused)} in {data} would be ignored; list them "
                         "in --valid-subset, merge them with --combine-valid-subsets, or pass "
                         "--ignore-unused-valid-subsets")  # fmt: skip


def make_trainer(parsed: ParsedArgs, task: Any, dist: DistInfo) -> Trainer:
    """Model, criterion, optimizer, schedule and precision, in fairseq's order (the seed is set first)."""
    common, opt = parsed["common"], parsed["optimization"]
    model = build_model(parsed, task)
    criterion = build_criterion(parsed, task)
    total, trained = count_parameters(model)
    chosen, ddp = parsed.components, parsed["distributed_training"]
    logger.info("model: %s, criterion: %s", chosen.arch, type(criterion).__name__)
    logger.info("num. model params: %d (num. trained: %d)", total, trained)
    if ddp.ddp_backend == "fully_sharded" and dist.world_size > 1:
        # before the optimizer: its parameters become the sharded ones; the wrapping options are model options
        # that only some model families have (fairseq's transformer: --checkpoint-activations, --min-params-to-wrap)
        model_cfg = parsed.get("model")
        wrap = 0 if getattr(model_cfg, "checkpoint_activations", False) \
            else getattr(model_cfg, "min_params_to_wrap", 100_000_000)  # fmt: skip
        units = shard_model(model.to(dist.device), dist.device, min_params_to_wrap=wrap, cpu_offload=ddp.cpu_offload,
                            reshard_after_forward=not ddp.no_reshard_after_forward)  # fmt: skip
        logger.info("FSDP over %d ranks: %d transformer layer(s) in their own unit, the rest in the root unit",
                    dist.world_size, units)  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(chosen.required("optimizer"), parsed.get("optimizer"), params, opt.lr[0])
    if ddp.zero_sharding == "os" and dist.world_size > 1:
        optimizer = shard_optimizer(optimizer)  # type: ignore[assignment]
        logger.info("ZeRO: the optimizer state is sharded over %d ranks", dist.world_size)
    scheduler = build_lr_scheduler(
        chosen.required("lr_scheduler"),
        parsed.get("lr_scheduler"),
        optimizer,
        lr=opt.lr,
        max_update=opt.max_update,
        maximize_best_checkpoint_metric=parsed["checkpoint"].maximize_best_checkpoint_metric,
    )
    scaler = None
    if common.amp:  # fairseq's AMP scaler is torch's GradScaler: growth every 2000 clean updates by default
        scaler = LossScaler(float(common.amp_init_scale), common.amp_scale_window or 2000, common.min_loss_scale)
    elif common.fp16:
        window = common.fp16_scale_window or default_scale_window(dist.world_size, opt.update_freq[0])
        scaler = LossScaler(float(common.fp16_init_scale), window, common.min_loss_scale,
                            tolerance=common.fp16_scale_tolerance, threshold=common.threshold_loss_scale)  # fmt: skip
    options = TrainerOptions(
        seed=common.seed,
        clip_norm=opt.clip_norm,
        autocast_dtype=autocast_dtype(fp16=common.fp16, bf16=common.bf16, amp=common.amp),
        loss_scaler=scaler,
        find_unused_parameters=ddp.find_unused_parameters,
        bucket_cap_mb=ddp.bucket_cap_mb,
        gradient_as_bucket_view=ddp.gradient_as_bucket_view,
        broadcast_buffers=ddp.broadcast_buffers,
        compile=common.compile,
        overflow_retries=common.amp_batch_retries if common.amp else 0,
        empty_cache_freq=common.empty_cache_freq,
    )
    trainer = Trainer(model, criterion, optimizer, scheduler, dist=dist, options=options)
    trainer.ema = make_ema(parsed["ema"], trainer.model)
    return trainer


def make_ema(cfg: EMAConfig, model: torch.nn.Module) -> ExponentialMovingAverage | None:
    """``--store-ema``: the average, seeded from ``--ema-seed-model`` when given (its keys must be the model's)."""
    if not cfg.store_ema:
        return None
    ema = ExponentialMovingAverage(decay=cfg.ema_decay, start_update=cfg.ema_start_update,
                                   update_freq=cfg.ema_update_freq, fp32=cfg.ema_fp32)  # fmt: skip
    if cfg.ema_seed_model:
        seed = load_ema_weights(cfg.ema_seed_model)
        own = model.state_dict()
        missing, extra = sorted(own.keys() - seed.keys()), sorted(seed.keys() - own.keys())
        if missing or extra:
            raise SystemExit(f"seqloom train: --ema-seed-model {cfg.ema_seed_model}: its EMA weights do not fit the "
                             f"model (missing {missing[:3]}, unexpected {extra[:3]})")  # fmt: skip
        ema.reset({k: v.to(own[k].device, own[k].dtype) for k, v in seed.items()})
        logger.info("EMA seeded from %s", cfg.ema_seed_model)
    return ema


class Batches:
    """Caches the epoch iterators of the training folders and of each validation subset."""

    def __init__(self, parsed: ParsedArgs, task: Any, trainer: Trainer) -> None:
        self.parsed, self.task, self.trainer = parsed, task, trainer
        self._train: dict[int, EpochBatchIterator] = {}
        self._train_epoch = 0  # the epoch the cached training iterator was built for
        self._valid: dict[str, EpochBatchIterator] = {}
        self.num_dirs = len(str(parsed["data"].data or "").split(":"))

    def _options(
        self, *, max_tokens: int | None, max_sentences: int | None, valid: bool, epoch: int
    ) -> BatchingOptions:
        ds, dist = self.parsed["dataset"], self.trainer.dist
        model_max = getattr(self.trainer.model, "max_positions", None)
        positions = _min_positions(self.task.max_positions(), model_max() if callable(model_max) else None)
        return BatchingOptions(
            max_tokens=max_tokens,
            max_sentences=max_sentences,
            max_positions=positions,
            ignore_invalid_inputs=ds.skip_invalid_size_inputs_valid_test if valid else True,
            required_batch_size_multiple=ds.required_batch_size_multiple,
            seed=self.parsed["common"].seed + (epoch if ds.update_ordered_indices_seed and not valid else 0),
            num_shards=dist.world_size,
            shard_id=dist.rank,
            num_workers=ds.num_workers,
            epoch=epoch,
            grouped_shuffling=ds.grouped_shuffling and not valid,
            skip_remainder_batch=ds.skip_remainder_batch and not valid,
            data_buffer_size=ds.data_buffer_size,
            drop_partial_last_batch=not valid,
        )

    def train(self, epoch: int) -> EpochBatchIterator:
        """The epoch's training batches: built once per data folder, or every epoch with
        ``--update-epoch-batch-itr`` (by default on with ``--grouped-shuffling``, as in fairseq).

        Batches reused across epochs are always built as the uninterrupted run builds them, at epoch 1 (a
        resumed run builds them the same way, whatever epoch it resumes in); batches rebuilt every epoch are
        built for that epoch. So an epoch's batches depend on the seed and the epoch only, and a run resumed
        from a checkpoint trains on exactly the batches the uninterrupted run does."""
        ds = self.parsed["dataset"]
        key = (epoch - 1) % self.num_dirs
        cached = self._train.get(key)
        if cached is not None and not (self._per_epoch(cached.dataset) and self._train_epoch != epoch):
            return cached
        if cached is not None:  # a rebuild: new batches over the same data
            dataset = cached.dataset
        else:
            # one folder is loaded once, at epoch 1, by the uninterrupted run: a run resumed in a later epoch
            # loads it as epoch 1 too, so that whatever a task derives from the load epoch (the order of
            # a resampled multilingual mixture) is the same (fairseq would load it as the resumed epoch)
            dataset = self.task.load_dataset(ds.train_subset, epoch=epoch if self.num_dirs > 1 else 1, combine=True)
        build_epoch = epoch if self._per_epoch(dataset) else 1
        self._train_epoch = epoch
        opts = self._options(max_tokens=ds.max_tokens, max_sentences=ds.batch_size, valid=False, epoch=build_epoch)
        self._train = {key: require_batches(self.task.get_batch_iterator(dataset, opts), ds.train_subset)}
        return self._train[key]

    def _per_epoch(self, dataset: Any) -> bool:
        """Whether training batches are built anew each epoch: with several data folders (one an epoch),
        ``--update-epoch-batch-itr``, or a dataset whose items change every epoch (resampled languages)."""
        ds = self.parsed["dataset"]
        rebuild = ds.grouped_shuffling if ds.update_epoch_batch_itr is None else ds.update_epoch_batch_itr
        return bool(rebuild) or self.num_dirs > 1 or not getattr(dataset, "can_reuse_epoch_itr_across_epochs", True)

    def valid(self, subset: str) -> EpochBatchIterator:
        if subset not in self._valid:
            ds = self.parsed["dataset"]
            dataset = self.task.datasets.get(subset) or self.task.load_dataset(subset, epoch=1, combine=False)
            opts = self._options(max_tokens=ds.max_tokens_valid, max_sentences=ds.batch_size_valid, valid=True, epoch=1)
            self._valid[subset] = require_batches(self.task.get_batch_iterator(dataset, opts), subset)
        return self._valid[subset]


def _min_positions(*limits: int | tuple[int | None, int | None] | None) -> tuple[int | None, int | None] | None:
    from seqloom.data.batching import resolve_max_positions

    return resolve_max_positions(*limits)


def first_iterator(batches: Batches, restored: Restored) -> EpochBatchIterator:
    """Where training starts: the restored iterator position, or epoch 1.

    fairseq resumes a run saved at the end of an epoch with that epoch's iterator, so the next epoch reuses its
    batches (and data folder); here the next epoch gets the batches the uninterrupted run would use."""
    state = restored.extra_state
    if state is not None and not restored.reset_dataloader and state.get("train_iterator"):
        itr_state = state["train_iterator"]
        epoch_itr = batches.train(int(itr_state["epoch"]))
        epoch_itr.load_state_dict(itr_state)
        if epoch_itr.epoch != int(itr_state["epoch"]):
            # the saved epoch had ended: the next one trains on its own batches (its data folder with a
            # ':'-separated DATA, new batches with --update-epoch-batch-itr), as the uninterrupted run does
            fresh = batches.train(epoch_itr.epoch)
            if fresh is not epoch_itr:
                fresh.load_state_dict({"epoch": epoch_itr.epoch, "iterations_in_epoch": 0})
            epoch_itr = fresh
        return epoch_itr
    return batches.train(1)


def checkpoint_namespace(parsed: ParsedArgs) -> argparse.Namespace:
    """The options saved as a checkpoint's ``args``, with derived model sizes filled in as fairseq's are
    (fairseq reads ``decoder_input_dim`` etc. from it and fails on None)."""
    values = dict(vars(parsed.namespace))
    model_cfg = parsed.get("model")
    resolved = getattr(model_cfg, "resolved", None)
    if callable(resolved):
        values.update({f.name: getattr(resolved(), f.name) for f in dataclasses.fields(model_cfg)})
    return argparse.Namespace(**values)


def run(parsed: ParsedArgs) -> TrainingLoop:
    """Trains as the options say; returns the finished loop (its ``history`` holds per-update stats)."""
    changed = parsed.changed_options()  # before check_options fills in derived values
    check_options(parsed)
    common, ckpt, dist_cfg = parsed["common"], parsed["checkpoint"], parsed["distributed_training"]
    dist = distributed.init_distributed(
        cpu=common.cpu,
        backend=dist_cfg.distributed_backend,
        world_size=dist_cfg.distributed_world_size,
        device_id=dist_cfg.device_id,
    )
    parsed.set(distributed_world_size=dist.world_size, distributed_rank=dist.rank)
    if not dist.is_master:
        logging.getLogger().setLevel(logging.WARNING)
    np.random.seed(common.seed)
    torch.manual_seed(common.seed)
    task = build_task(parsed)
    data_cfg = parsed["dataset"]
    if not data_cfg.disable_validation:
        check_valid_subsets(getattr(parsed["task"], "data", None), data_cfg)
    subsets = []
    for subset in data_cfg.valid_subset.split(",") if not data_cfg.disable_validation else []:
        # --combine-valid-subsets: valid, valid1, valid2... validate as one subset (fairseq's combine)
        task.load_dataset(subset, epoch=1, combine=bool(data_cfg.combine_valid_subsets))
        # a multilingual task also validates each language of the split (valid_en, ...), as fairseq's does
        subsets += [subset, *task.language_subsets.get(subset, [])]
    trainer = make_trainer(parsed, task, dist)
    lock = SaveDirLock(ckpt.save_dir)
    if dist.is_master and not ckpt.no_save:  # the options and data are known to be good: claim the folder
        verify_save_dir(ckpt.save_dir)
        lock.acquire()  # held until training ends (the OS drops it if the process dies)
    try:
        if lock.held:  # no other trainer is saving there: what interrupted saves left can go
            remove_stale_temp_files(ckpt.save_dir)
        return train_from_checkpoint(parsed, task, trainer, changed=changed, valid_subsets=subsets)
    finally:
        lock.release()


def train_from_checkpoint(parsed: ParsedArgs, task: Any, trainer: Trainer, *, changed: list[str],
                          valid_subsets: list[str] | None = None) -> TrainingLoop:  # fmt: skip
    """Restores the run's last checkpoint (if any) and trains to the end; ``changed`` lists the options set away
    from their defaults (logged once the inputs proved good); ``valid_subsets``: the splits validated (those of
    ``--valid-subset`` and a multilingual task's per-language ones; None: ``--valid-subset``'s)."""
    common, ckpt, data_cfg = parsed["common"], parsed["checkpoint"], parsed["dataset"]
    if valid_subsets is None:
        valid_subsets = [] if data_cfg.disable_validation else data_cfg.valid_subset.split(",")
    options = parsed.namespace  # as they are now, all settled
    dist = trainer.dist
    restored = restore(ckpt, trainer, options)
    batches = Batches(parsed, task, trainer)
    epoch_itr = first_iterator(batches, restored)
    for subset in valid_subsets:  # a validation split with no batch fails now, not after an epoch
        batches.valid(subset)
    # the configuration once the data, dictionaries and checkpoints proved good: a mistake's message comes first
    logger.info("options set away from their defaults: %s", " ".join(changed) or "none")
    logger.debug("all options: %s", options)
    fmt = resolve_log_format(common.log_format, no_progress_bar=common.no_progress_bar)
    run_name = os.environ.get("WANDB_NAME", os.path.basename(ckpt.save_dir))  # fairseq's run name
    progress = Progress(fmt, tensorboard_logdir=common.tensorboard_logdir, wandb_project=common.wandb_project,
                        wandb_run_name=run_name, enabled=dist.is_master)  # fmt: skip
    progress.update_config(vars(options))
    progress.max_update = parsed["optimization"].max_update or 0
    # the loop validates the per-language splits too: a run-time list, not the option (a checkpoint's args keep that)
    loop_dataset = dataclasses.replace(data_cfg, valid_subset=",".join(valid_subsets)) if valid_subsets else data_cfg
    cfgs = LoopConfigs(common=common, dataset=loop_dataset, optimization=parsed["optimization"], checkpoint=ckpt)
    loop = TrainingLoop(trainer, cfgs, checkpoint_namespace(parsed), batches.train, batches.valid, progress)
    loop.valid_hook, loop.valid_reduce = task.validation_extras()
    extra = restored.extra_state or {}
    if "best" in extra and not restored.reset_optimizer and not restored.reset_meters:
        loop.best.best = extra["best"]
    if not restored.reset_meters:
        loop.previous_training_time = float(extra.get("previous_training_time", 0.0))
        if "metrics" in extra:  # fairseq's meters (numpy BLEU counts with --eval-bleu) go on into later checkpoints
            loop.carried_state["metrics"] = extra["metrics"]
        if isinstance(extra.get("train_meters"), dict):
            loop.resumed_meters = extra["train_meters"]
    try:
        loop.run(epoch_itr)
    finally:
        progress.close()
    return loop


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed = parse_args(SPEC, argv)
    world = parsed["distributed_training"].distributed_world_size
    if world > 1 and "WORLD_SIZE" not in os.environ:
        return distributed.spawn(main, argv, world, port=parsed["distributed_training"].distributed_port)
    common = parsed["common"]
    # fairseq's --log-format shapes the progress lines; log records keep the ``date | LEVEL | name`` form
    setup_logging(None, common.log_file)
    try:
        run(parsed)
    except (FileNotFoundError, ValueError, CheckpointError, FloatingPointError) as err:
        logger.debug("details", exc_info=True)
        logger.error("%s", err)  # (training diverged: FloatingPointError, whose message says what to change)
        return 1
    except KeyboardInterrupt:
        logger.warning("interrupted: run the same command again to resume from the last checkpoint in %s "
                       "(updates since it are redone)", parsed["checkpoint"].save_dir)  # fmt: skip
        return 130
    finally:
        distributed.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
