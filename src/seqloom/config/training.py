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

    num_workers: int = field(1, help="how many subprocesses to use for data loading")
    skip_invalid_size_inputs_valid_test: bool = field(
        False, help="ignore too long or too short lines in valid and test set"
    )
    max_tokens: Optional[int] = field(None, help="maximum number of tokens in a batch")
    batch_size: Optional[int] = field(None, help="number of examples in a batch", aliases=("--max-sentences",))
    required_batch_size_multiple: int = field(
        8,
        help="batch size will be a multiplier of this value; a last training batch that is not is left out of "
        "each epoch, as in fairseq (generation and validation keep it)",
    )
    required_seq_len_multiple: int = field(
        1, help="maximum sequence length in batch will be a multiplier of this value"
    )
    dataset_impl: Optional[DatasetImpl] = field(None, help="output dataset implementation")
    data_buffer_size: int = field(
        10,
        help="number of batches to preload (with --num-workers 0, a background thread reads them while the model "
        "trains, as fairseq's does; worker processes read ahead on their own)",
    )
    train_subset: str = field("train", help="data subset to use for training (e.g. train, valid, test)")
    valid_subset: str = field("valid", help="comma separated list of data subsets to use for validation")
    combine_valid_subsets: Optional[bool] = field(
        None, help="validate on valid, valid1, valid2... combined as one subset", aliases=("--combine-val",)
    )
    ignore_unused_valid_subsets: bool = field(False, help="do not raise error if valid subsets are ignored")
    validate_interval: int = field(1, help="validate every N epochs")
    validate_interval_updates: int = field(0, help="validate every N updates")
    validate_after_updates: int = field(0, help="don't validate until reaching this many updates")
    fixed_validation_seed: Optional[int] = field(None, help="specified random seed for validation")
    grouped_shuffling: bool = field(
        False,
        help="shuffle batches in groups of num_shards to enable similar sequence lengths on each GPU worker when "
        "batches are sorted by length",
    )
    update_epoch_batch_itr: Optional[bool] = field(
        None, help="if true then prevents the reuse the epoch batch iterator (default: --grouped-shuffling)"
    )
    update_ordered_indices_seed: bool = field(
        False, help="if true then increment seed with epoch for getting batch iterators"
    )
    disable_validation: bool = field(False, help="disable validation")
    max_tokens_valid: Optional[int] = field(
        None, help="maximum number of tokens in a validation batch (defaults to --max-tokens)"
    )
    batch_size_valid: Optional[int] = field(
        None, help="batch size of the validation batch (defaults to --batch-size)", aliases=("--max-sentences-valid",)
    )
    max_valid_steps: Optional[int] = field(None, help="how many batches to evaluate", aliases=("--nval",))
    curriculum: int = field(0, help="don't shuffle batches for first N epochs")
    gen_subset: str = field("test", help="data subset to generate (train, valid, test)")
    num_shards: int = field(1, help="shard generation over N shards")
    shard_id: int = field(0, help="id of the shard to generate (id < num_shards)")
    skip_remainder_batch: bool = field(
        False,
        help="leave each training epoch's last batch out, and with --update-freq N a last group of fewer than N "
        "batches (what fairseq does with it; its help text says the opposite)",
    )


@dataclass(kw_only=True)
class OptimizationConfig:
    """When training stops, how updates are formed and the base learning rate."""

    max_epoch: int = field(0, help="force stop training at specified epoch")
    max_update: int = field(0, help="force stop training at specified update")
    stop_time_hours: float = field(0.0, help="force stop training after specified cumulative time (if >0)")
    clip_norm: float = field(0.0, help="clip threshold of gradients")
    sentence_avg: bool = field(
        False, help="normalize gradients by the number of sentences in a batch (default is tokens)"
    )
    update_freq: list[int] = field([1], help="update parameters every N_i batches, when in epoch i")
    lr: list[float] = field(
        [0.25],
        help="learning rate for the first N epochs; all epochs >N using LR_N (note: this may be interpreted differently depending on --lr-scheduler)",
    )
    stop_min_lr: float = field(-1.0, help="stop training when the learning rate reaches this minimum")


@dataclass(kw_only=True)
class CheckpointConfig:
    """Where checkpoints go, which are kept, and what a restart restores."""

    save_dir: str = field("checkpoints", help="path to save checkpoints")
    restore_file: str = field(
        "checkpoint_last.pt", help="filename from which to load checkpoint (default: <save-dir>/checkpoint_last.pt"
    )
    continue_once: Optional[str] = field(
        None, help="continues from this checkpoint, unless a checkpoint indicated in 'restore_file' option is present"
    )
    finetune_from_model: Optional[str] = field(
        None, help="finetune from a pretrained model; note that meters and lr scheduler will be reset"
    )
    reset_dataloader: bool = field(False, help="if set, does not reload dataloader state from the checkpoint")
    reset_lr_scheduler: bool = field(False, help="if set, does not load lr scheduler state from the checkpoint")
    reset_meters: bool = field(False, help="if set, does not load meters from the checkpoint")
    reset_optimizer: bool = field(False, help="if set, does not load optimizer state from the checkpoint")
    optimizer_overrides: str = field(
        "{}", help="a dictionary used to override optimizer args when loading a checkpoint"
    )
    save_interval: int = field(1, help="save a checkpoint every N epochs")
    save_interval_updates: int = field(0, help="save a checkpoint (and validate) every N updates")
    keep_interval_updates: int = field(-1, help="keep the last N checkpoints saved with --save-interval-updates")
    keep_interval_updates_pattern: int = field(
        -1,
        help="when used with --keep-interval-updates, skip deleting any checkpoints with update X where X %% keep_interval_updates_pattern == 0",
    )
    keep_last_epochs: int = field(-1, help="keep last N epoch checkpoints")
    keep_best_checkpoints: int = field(-1, help="keep best N checkpoints based on scores")
    no_save: bool = field(False, help="don't save models or checkpoints")
    no_epoch_checkpoints: bool = field(False, help="only store last and best checkpoints")
    no_last_checkpoints: bool = field(False, help="don't store last checkpoints")
    no_save_optimizer_state: bool = field(False, help="don't save optimizer-state as part of checkpoint")
    best_checkpoint_metric: str = field("loss", help='metric to use for saving "best" checkpoints')
    maximize_best_checkpoint_metric: bool = field(
        False, help='select the largest metric value for saving "best" checkpoints'
    )
    patience: int = field(
        -1, help="early stop training if valid performance doesn't improve for N consecutive validation runs"
    )
    checkpoint_suffix: str = field("", help="suffix to add to the checkpoint file name")
    write_checkpoints_asynchronously: bool = field(
        False,
        help="write checkpoints in a background thread while training goes on (still atomically)",
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

    distributed_world_size: int = field(1, help="total number of processes across all nodes")
    distributed_num_procs: int = field(1, help="total number of processes to fork (default: all visible GPUs)")
    distributed_rank: int = field(0, help="rank of the current worker")
    distributed_backend: str = field("nccl", help="distributed backend (gloo is used on the CPU)")
    distributed_init_method: Optional[str] = field(
        None, help="typically tcp://hostname:port that will be used to establish initial connection"
    )
    distributed_port: int = field(-1, help="port number (not required if using --distributed-init-method)")
    device_id: int = field(0, help="which GPU to use (by default looks for $LOCAL_RANK)", aliases=("--local_rank",))
    ddp_backend: Literal["c10d", "fully_sharded", "legacy_ddp", "no_c10d", "pytorch_ddp", "slowmo"] = field(
        "pytorch_ddp", help="DistributedDataParallel backend"
    )
    bucket_cap_mb: int = field(25, help="bucket size for reduction")
    no_reshard_after_forward: bool = field(
        False, help="don't reshard parameters after forward pass (--ddp-backend fully_sharded)"
    )
    cpu_offload: bool = field(False, help="offload FP32 params to CPU (--ddp-backend fully_sharded)")
    find_unused_parameters: bool = field(
        False, help="disable unused parameter detection (not applicable to --ddp-backend=legacy_ddp)"
    )
    gradient_as_bucket_view: bool = field(
        False,
        help="when set to True, gradients will be views pointing to different offsets of allreduce communication buckets",
    )
    broadcast_buffers: bool = field(
        False, help="copy non-trainable parameters between GPUs, such as batchnorm population statistics"
    )
    zero_sharding: Literal["none", "os"] = field(
        "none", help="ZeRO sharding: 'os' shards the optimizer state over the data-parallel ranks"
    )


@dataclass(kw_only=True)
class EMAConfig:
    """An exponential moving average of the weights, kept beside the model and saved in its checkpoints."""

    store_ema: bool = field(False, help="store exponential moving average shadow model")
    ema_decay: float = field(0.9999, help="decay for exponential moving average model")
    ema_start_update: int = field(0, help="start EMA update after this many model updates")
    ema_seed_model: Optional[str] = field(
        None, help="seed to load EMA model from: a checkpoint with EMA weights (its extra_state['ema'])"
    )
    ema_update_freq: int = field(1, help="do EMA update every this many model updates")
    ema_fp32: bool = field(False, help="if true, store EMA model in fp32 even if model is in fp16")


@dataclass(kw_only=True)
class DataDirConfig:
    """The positional ``DATA`` argument every task reads (fairseq's task-level ``data``)."""

    data: Optional[str] = field(
        None,
        help="colon separated path to data directories list, will be iterated upon during epochs in round-robin manner",
        positional=True,
    )
