"""Restoring a run from a checkpoint (fairseq's ``--restore-file`` / ``--reset-*`` / ``--finetune-from-model``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from seqloom.checkpoint.io import CheckpointError
from seqloom.config.training import CheckpointConfig
from seqloom.optim import load_optimizer_state
from seqloom.trainer.checkpoints import CRITERION_CLASS_NAMES, OPTIMIZER_CLASS_NAMES
from seqloom.trainer.sharding import load_full_model_state, shard_optimizer_state
from seqloom.trainer.trainer import Trainer

logger = logging.getLogger(__name__)


@dataclass
class Restored:
    """What a restore gives back to the loop (``extra_state`` None: nothing was loaded)."""

    path: str
    extra_state: dict[str, Any] | None
    reset_dataloader: bool
    reset_meters: bool
    reset_optimizer: bool


def resolve_restore_path(cfg: CheckpointConfig) -> tuple[str, bool]:
    """The file to restore from and whether it is a fine-tuning start (which resets everything but weights)."""
    if cfg.finetune_from_model is not None and any(
        (cfg.reset_optimizer, cfg.reset_lr_scheduler, cfg.reset_meters, cfg.reset_dataloader)
    ):
        raise ValueError(
            "--finetune-from-model already starts optimizer, scheduler, meters and data position afresh: drop "
            "--reset-optimizer, --reset-lr-scheduler, --reset-meters and --reset-dataloader"
        )
    if cfg.restore_file != "checkpoint_last.pt":
        if cfg.finetune_from_model is not None:
            raise ValueError("--finetune-from-model and a non-default --restore-file can not be given together")
        return cfg.restore_file.replace(".pt", cfg.checkpoint_suffix + ".pt"), False
    last = os.path.join(cfg.save_dir, f"checkpoint_last{cfg.checkpoint_suffix}.pt")
    if os.path.exists(last):
        return last, False
    if cfg.continue_once is not None:
        return cfg.continue_once, False
    if cfg.finetune_from_model is not None:
        if not os.path.exists(cfg.finetune_from_model):
            raise FileNotFoundError(f"--finetune-from-model {cfg.finetune_from_model}: no such file")
        logger.info(
            "starting from the weights of %s; optimizer, scheduler, meters and data position start afresh",
            cfg.finetune_from_model,
        )
        return cfg.finetune_from_model, True
    return last, False


def check_weights_fit(own: Mapping[str, Tensor], saved: Mapping[str, Tensor], *, source: str) -> None:
    """Raises :class:`CheckpointError` summing up how the checkpoint's weights ``saved`` differ from the model's
    ``own`` (names and shapes; a few examples of each kind), instead of torch's list of every mismatch; returns
    if their names and shapes agree."""
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    resized = [k for k in own if k in saved and tuple(own[k].shape) != tuple(saved[k].shape)]
    if not (missing or unexpected or resized):
        return

    def listed(names: list[str]) -> str:
        return ", ".join(names[:3]) + ", ..." * (len(names) > 3)

    parts = []
    if resized:
        examples = [f"{k}: {tuple(saved[k].shape)} vs {tuple(own[k].shape)}" for k in resized]
        parts.append(f"{len(resized)} weights differ in size (checkpoint vs model, {listed(examples)})")
    if missing:
        parts.append(f"{len(missing)} model weights are not in it ({listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} of its weights have no place in the model ({listed(unexpected)})")
    raise CheckpointError(
        f"{source}: the checkpoint's weights do not fit the model built from these options: {'; '.join(parts)}. "
        "Check --arch and the size flags, or, if this --save-dir holds another run's checkpoints, use a new one."
    )


def restore(cfg: CheckpointConfig, trainer: Trainer, args: argparse.Namespace) -> Restored:
    """Loads the model (and unless reset, optimizer, schedule, update count) from the restore file."""
    path, finetune = resolve_restore_path(cfg)
    reset_opt = cfg.reset_optimizer or finetune
    reset_sched = cfg.reset_lr_scheduler or finetune
    restored = Restored(path, None, cfg.reset_dataloader or finetune, cfg.reset_meters or finetune, reset_opt)
    if not os.path.exists(path):
        if cfg.restore_file != "checkpoint_last.pt":
            raise FileNotFoundError(f"--restore-file {path}: no such file")
        logger.info("No existing checkpoint found %s", path)
        return restored
    from seqloom.checkpoint.io import load_checkpoint

    # the model is built: a file declaring far more than its weights and their optimizer/EMA copies is refused
    expected = sum(t.numel() for t in trainer.model.state_dict().values() if isinstance(t, torch.Tensor))
    state = load_checkpoint(path, expected_params=expected)
    if trainer.sharded:  # FSDP: each rank keeps its shard of the full weights (names and shapes checked there)
        load_full_model_state(trainer.model, state["model"], source=path)
    else:
        try:  # (a model's own load_state_dict may first upgrade fairseq's keys, e.g. BART's heads)
            trainer.model.load_state_dict(state["model"], strict=True)
        except RuntimeError as err:
            check_weights_fit(trainer.model.state_dict(), state["model"], source=path)
            raise CheckpointError(f"{path}: the checkpoint's weights do not fit the model: {err}") from None
    history = state.get("optimizer_history") or [{}]
    last = history[-1]
    optimizer_state = state.get("last_optimizer_state")
    if not reset_opt and optimizer_state is not None:
        _check_names(path, last, trainer, args)
        if not reset_sched and last.get("lr_scheduler_state") is not None:
            trainer.lr_scheduler.load_state_dict(last["lr_scheduler_state"])
        overrides = json.loads(cfg.optimizer_overrides or "{}")
        load_optimizer_state(trainer.optimizer, optimizer_state, overrides=overrides)
        if trainer.sharded:
            shard_optimizer_state(trainer.optimizer)
        trainer.set_num_updates(int(last.get("num_updates", 0)))
    extra = state.get("extra_state") or {}
    _restore_precision_and_rng(trainer, extra, reset_opt)
    _restore_ema(trainer, extra, path)
    logger.info("Loaded checkpoint %s (epoch %s @ %d updates)", path, _epoch_of(extra), trainer.num_updates)
    restored.extra_state = extra
    return restored


def _check_names(path: str, last: dict[str, Any], trainer: Trainer, args: argparse.Namespace) -> None:
    want_crit = CRITERION_CLASS_NAMES.get(getattr(args, "criterion", ""), type(trainer.criterion).__name__)
    want_opt = OPTIMIZER_CLASS_NAMES.get(getattr(args, "optimizer", ""), type(trainer.optimizer).__name__)
    if last.get("criterion_name", want_crit) != want_crit:
        raise ValueError(f"{path}: criterion does not match ({last['criterion_name']}); add --reset-optimizer")
    if last.get("optimizer_name", want_opt) != want_opt:
        raise ValueError(f"{path}: optimizer does not match ({last['optimizer_name']}); add --reset-optimizer")


def _restore_precision_and_rng(trainer: Trainer, extra: dict[str, Any], reset_optimizer: bool) -> None:
    scaler = trainer.options.loss_scaler
    if scaler is not None and not reset_optimizer and isinstance(extra.get("loss_scale"), dict):
        scaler.load_state_dict(extra["loss_scale"])
    rng = extra.get("rng_state")
    if isinstance(rng, torch.Tensor):
        torch.set_rng_state(rng)


def _restore_ema(trainer: Trainer, extra: dict[str, Any], path: str) -> None:
    """``--store-ema``: the checkpoint's average, or (none saved) the restored weights, as fairseq does."""
    if trainer.ema is None:
        return
    device = trainer.dist.device
    if "ema" not in extra:
        logger.warning("%s holds no EMA weights but --store-ema is set: the average restarts from its weights", path)
        trainer.ema.reset(trainer.model.state_dict())
        return
    logger.info("Loading EMA from checkpoint")
    fp32 = extra.get("ema_fp32_params")
    trainer.ema.reset({k: v.to(device) for k, v in extra["ema"].items()},
                      {k: v.to(device) for k, v in fp32.items()} if fp32 is not None else None)  # fmt: skip


def _epoch_of(extra: dict[str, Any]) -> Any:
    itr = extra.get("train_iterator") or {}
    return itr.get("epoch")
