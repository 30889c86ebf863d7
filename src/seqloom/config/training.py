"""Config groups of ``seqloom train`` / ``validate``: data loading, optimization, checkpoints, distributed.

Field names and defaults are fairseq's (``fairseq/dataclass/configs.py``), so a fairseq command line and
the ``args`` Namespace stored in a fairseq checkpoint map onto them one to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from seqloom.config.options import field

DatasetImpl = Literal["raw", "lazy", "cached", "mmap", "fasta", "huffman"]


@dataclass(kw_only=True)
class DatasetConfig:
    """How batches are formed and which splits are read."""

    num_workers: int = field(
        1, help="processes that read and collate batches beside training; 0 reads them in the main process"
    )
    skip_invalid_size_inputs_valid_test: bool = field(
        False,
        help="drop validation and test samples longer than the size limits, with a warning, instead of stopping with an error",
    )
    max_tokens: Optional[int] = field(
        None,
        help="cap on a batch's size in tokens, padding included (unset: batches are limited by --batch-size alone)",
    )
    batch_size: Optional[int] = field(
        None,
        help="cap on a batch's size in sentences (unset: batches are limited by --max-tokens alone)",
        aliases=("--max-sentences",),
    )
    required_batch_size_multiple: int = field(
        8,
        help="round each batch's sentence count down to a multiple of this; in training a final batch that cannot be rounded is dropped each epoch, as fairseq does (generation and validation keep it)",
    )
    required_seq_len_multiple: int = field(
        1, help="pad each batch's length in tokens up to a multiple of this (1: no extra padding)"
    )
    dataset_impl: Optional[DatasetImpl] = field(
        None,
        help="format of the binary data files to read or write (unset: find it from the files; preprocess writes mmap)",
    )
    data_buffer_size: int = field(
        10,
        help="batches read ahead of training (with --num-workers 0 a background thread reads them; worker processes keep their own queue)",
    )
    train_subset: str = field("train", help="name of the split to train on: the DATA/<name>.* files")
    valid_subset: str = field("valid", help="splits to validate on, comma-separated, each reported on its own")
    combine_valid_subsets: Optional[bool] = field(
        None, help="read valid, valid1, valid2, ... as one validation split", aliases=("--combine-val",)
    )
    ignore_unused_valid_subsets: bool = field(
        False, help="allow valid1, valid2, ... files in DATA that --valid-subset does not name (otherwise an error)"
    )
    validate_interval: int = field(1, help="run validation after every N epochs")
    validate_interval_updates: int = field(0, help="also run validation after every N updates (0: only at epoch ends)")
    validate_after_updates: int = field(0, help="no validation, and no mid-epoch checkpoint, before this many updates")
    fixed_validation_seed: Optional[int] = field(
        None,
        help="seed the random generator with this before each validation, so that every validation draws the same (unset: leave it as training left it)",
    )
    grouped_shuffling: bool = field(
        False,
        help="shuffle batches in groups of --distributed-world-size, so that the workers of one step get batches of similar lengths",
    )
    update_epoch_batch_itr: Optional[bool] = field(
        None, help="rebuild the batch iterator at each epoch instead of reusing it (unset: follows --grouped-shuffling)"
    )
    update_ordered_indices_seed: bool = field(
        False, help="add the epoch number to the seed that orders the samples when the batches are rebuilt"
    )
    disable_validation: bool = field(False, help="never validate (DATA then needs no validation split)")
    max_tokens_valid: Optional[int] = field(
        None, help="cap on a validation batch's size in tokens (unset: --max-tokens)"
    )
    batch_size_valid: Optional[int] = field(
        None,
        help="cap on a validation batch's size in sentences (unset: --batch-size)",
        aliases=("--max-sentences-valid",),
    )
    max_valid_steps: Optional[int] = field(
        None, help="stop each validation after this many batches (unset: the whole split)", aliases=("--nval",)
    )
    curriculum: int = field(0, help="keep the batches in length order, unshuffled, for the first N epochs")
    gen_subset: str = field("test", help="name of the split to decode or score: the DATA/<name>.* files")
    num_shards: int = field(1, help="split the data into N shards and work on one of them (--shard-id)")
    shard_id: int = field(0, help="which shard to work on, counted from 0 and below --num-shards")
    skip_remainder_batch: bool = field(
        False,
        help="leave out each training epoch's last batch, and with --update-freq N a last group of fewer than N batches (what fairseq does; its help text says the opposite)",
    )


@dataclass(kw_only=True)
class OptimizationConfig:
    """When training stops, how updates are formed and the base learning rate."""

    max_epoch: int = field(0, help="stop training after this epoch (0: no epoch limit)")
    max_update: int = field(0, help="stop training after this many updates (0: no update limit)")
    stop_time_hours: float = field(
        0.0, help="stop training once it has run this many hours in all, resumed runs included (0: no time limit)"
    )
    clip_norm: float = field(0.0, help="rescale the gradients whenever their total L2 norm exceeds this (0: never)")
    sentence_avg: bool = field(False, help="average the loss over the batch's sentences rather than its target tokens")
    update_freq: list[int] = field(
        [1],
        help="batches whose gradients are summed into one update; a list gives one value per epoch, the last for all later ones",
    )
    lr: list[float] = field(
        [0.25],
        help="base learning rate; a list gives one per epoch, the last for all later ones (how it is used depends on --lr-scheduler)",
    )
    stop_min_lr: float = field(-1.0, help="stop training once the learning rate is at or below this (-1: never)")


@dataclass(kw_only=True)
class CheckpointConfig:
    """Where checkpoints go, which are kept, and what a restart restores."""

    save_dir: str = field("checkpoints", help="folder for checkpoint files (made if missing)")
    restore_file: str = field(
        "checkpoint_last.pt",
        help="checkpoint to resume from; a bare file name is looked up in --save-dir (default: checkpoint_last.pt there)",
    )
    continue_once: Optional[str] = field(
        None,
        help="start from this checkpoint when --restore-file does not exist yet; once it does, resume from that instead",
    )
    finetune_from_model: Optional[str] = field(
        None,
        help="start from the weights of this checkpoint only: optimizer, scheduler, meters and data position start afresh",
    )
    reset_dataloader: bool = field(
        False, help="when resuming, start the epoch's data from the beginning instead of where the checkpoint stopped"
    )
    reset_lr_scheduler: bool = field(
        False, help="when resuming, start the learning-rate scheduler afresh instead of loading its state"
    )
    reset_meters: bool = field(
        False, help="when resuming, start the logged averages and the training-time clock from zero"
    )
    reset_optimizer: bool = field(
        False, help="when resuming, start the optimizer's state (moments, step counts) afresh"
    )
    optimizer_overrides: str = field(
        "{}", help="optimizer settings to change when its state is loaded from a checkpoint, as a Python dict literal"
    )
    save_interval: int = field(1, help="write an epoch checkpoint after every N epochs")
    save_interval_updates: int = field(
        0, help="also write a checkpoint, and validate, after every N updates (0: only at epoch ends)"
    )
    keep_interval_updates: int = field(
        -1, help="delete all but the newest N checkpoints written by --save-interval-updates (-1: keep them all)"
    )
    keep_interval_updates_pattern: int = field(
        -1,
        help="with --keep-interval-updates, never delete the checkpoints of updates that are multiples of this (-1: none is spared)",
    )
    keep_last_epochs: int = field(-1, help="delete all but the newest N epoch checkpoints (-1: keep them all)")
    keep_best_checkpoints: int = field(
        -1, help="also keep the N checkpoints with the best --best-checkpoint-metric, named by their score (-1: none)"
    )
    no_save: bool = field(False, help="write no checkpoint at all")
    no_epoch_checkpoints: bool = field(
        False, help="write only checkpoint_last.pt and checkpoint_best.pt, no per-epoch files"
    )
    no_last_checkpoints: bool = field(False, help="write no checkpoint_last.pt")
    no_save_optimizer_state: bool = field(
        False, help="leave the optimizer's state out of checkpoints (smaller files; a resume restarts the optimizer)"
    )
    best_checkpoint_metric: str = field(
        "loss",
        help="validation figure that decides which checkpoint is checkpoint_best.pt (and what --patience follows)",
    )
    maximize_best_checkpoint_metric: bool = field(
        False, help="a higher --best-checkpoint-metric is better (as for BLEU); without it lower is better"
    )
    patience: int = field(
        -1,
        help="stop after this many validations in a row bring no better --best-checkpoint-metric (-1: never stop for this)",
    )
    checkpoint_suffix: str = field("", help="text appended to every checkpoint's file name, before .pt")
    write_checkpoints_asynchronously: bool = field(
        False,
        help="write checkpoints in a background thread while training goes on (each file still appears whole or not at all)",
        aliases=("--save-async",),
    )
    continue_on_save_error: bool = field(
        False,
        help="when a checkpoint cannot be written (a full disk), log it and train on without it instead of "
        "stopping; the next save tries again (seqloom's own flag)",
    )


@dataclass(kw_only=True)
class DistributedConfig:
    """Multi-process data-parallel training (torchrun sets the rank and world size in the environment)."""

    distributed_world_size: int = field(1, help="number of training processes in all, over every machine")
    distributed_num_procs: int = field(
        1, help="number of processes to start on this machine (default: one per visible GPU)"
    )
    distributed_rank: int = field(0, help="this process's number among all training processes, from 0")
    distributed_backend: str = field(
        "nccl", help="torch.distributed backend for GPU processes (gloo is used on the CPU)"
    )
    distributed_init_method: Optional[str] = field(
        None,
        help="where the processes meet to start, such as tcp://HOST:PORT or file://PATH (unset: from the environment or --distributed-port)",
    )
    distributed_port: int = field(-1, help="TCP port on this machine where the processes meet (-1: not used)")
    device_id: int = field(
        0, help="GPU number for this process (by default $LOCAL_RANK, else 0)", aliases=("--local_rank",)
    )
    ddp_backend: Literal["c10d", "fully_sharded", "legacy_ddp", "no_c10d", "pytorch_ddp", "slowmo"] = field(
        "pytorch_ddp", help="how gradients are shared between the data-parallel processes"
    )
    bucket_cap_mb: int = field(25, help="size in MB of the gradient buckets that are all-reduced together")
    no_reshard_after_forward: bool = field(
        False,
        help="keep gathered parameters after the forward pass instead of freeing them (--ddp-backend fully_sharded)",
    )
    cpu_offload: bool = field(
        False, help="hold fp32 parameters and optimizer state in CPU memory (--ddp-backend fully_sharded)"
    )
    find_unused_parameters: bool = field(
        False,
        help="let DistributedDataParallel look for parameters that got no gradient in a step (slower; needed when some layers are skipped)",
    )
    gradient_as_bucket_view: bool = field(
        False,
        help="let gradients live inside the all-reduce buckets instead of being copied into them (saves memory)",
    )
    broadcast_buffers: bool = field(
        False,
        help="copy non-parameter buffers (such as batch-norm statistics) from process 0 to the others at every forward pass",
    )
    zero_sharding: Literal["none", "os"] = field(
        "none",
        help="'os' splits the optimizer's state among the data-parallel processes instead of holding a full copy in each",
    )


@dataclass(kw_only=True)
class EMAConfig:
    """An exponential moving average of the weights, kept beside the model and saved in its checkpoints."""

    store_ema: bool = field(
        False, help="keep an exponential moving average of the weights beside the model, saved in checkpoints"
    )
    ema_decay: float = field(
        0.9999, help="weight kept by the moving average at each of its updates (the new weights get 1 minus this)"
    )
    ema_start_update: int = field(
        0, help="leave the moving average equal to the model for this many updates, then start averaging"
    )
    ema_seed_model: Optional[str] = field(
        None, help="start the moving average from this checkpoint's stored average (its extra_state['ema'])"
    )
    ema_update_freq: int = field(1, help="update the moving average after every N updates")
    ema_fp32: bool = field(False, help="hold the moving average in fp32 even when the model trains in fp16")


@dataclass(kw_only=True)
class DataDirConfig:
    """The positional ``DATA`` argument every task reads (fairseq's task-level ``data``)."""

    data: Optional[str] = field(
        None,
        help="the binarized data folder; several separated by ':' are used one per epoch in turn",
        positional=True,
    )
