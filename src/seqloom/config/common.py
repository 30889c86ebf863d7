"""Config groups shared by several commands, with fairseq's option names and defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from seqloom.config.options import field

LogFormat = Literal["json", "none", "simple", "tqdm"]


@dataclass(kw_only=True)
class CommonConfig:
    """Options every command takes: logging, seeding, device and precision."""

    no_progress_bar: bool = field(False, help="print plain log lines instead of a progress bar")
    log_interval: int = field(100, help="print a training log line after every N updates")
    log_format: Optional[LogFormat] = field(
        None, help="how progress is printed: json, simple, tqdm or none (unset: tqdm on a terminal, simple otherwise)"
    )
    log_file: Optional[str] = field(None, help="also write logs to this file")
    tensorboard_logdir: Optional[str] = field(None, help="write TensorBoard logs to this directory")
    wandb_project: Optional[str] = field(None, help="Weights and Biases project to send the logged figures to")
    seed: int = field(1, help="seed of every random generator (initialization, shuffling, dropout)")
    cpu: bool = field(False, help="use the CPU even when CUDA is available")
    bf16: bool = field(False, help="train and decode under bfloat16 autocast")
    fp16: bool = field(False, help="use float16 with dynamic loss scaling")
    amp: bool = field(False, help="use automatic mixed precision (float16 autocast, dynamic loss scaling)")
    memory_efficient_bf16: bool = field(False, help="use bfloat16 (implies --bf16; weights stay float32 here)")
    memory_efficient_fp16: bool = field(False, help="use float16 (implies --fp16; weights stay float32 here)")
    fp16_no_flatten_grads: bool = field(
        False, help="accepted for compatibility: seqloom never copies the fp16 gradients into one flat tensor"
    )
    fp16_init_scale: int = field(128, help="loss scale that --fp16 starts with")
    fp16_scale_window: Optional[int] = field(
        None,
        help="updates without overflow after which the loss scale doubles (unset: 2**14 divided by the number of processes and by --update-freq)",
    )
    fp16_scale_tolerance: float = field(
        0.0,
        help="share of updates, from 0 to 1, that may overflow before the loss scale is halved (0: halve at the first overflow)",
    )
    threshold_loss_scale: Optional[float] = field(
        None, help="never let the loss scale drop below this (unset: no floor)"
    )
    amp_batch_retries: int = field(
        2, help="times a batch is tried again with a halved loss scale after an overflow under --amp"
    )
    amp_init_scale: int = field(2**7, help="loss scale that --amp starts with")
    amp_scale_window: Optional[int] = field(
        None, help="updates without overflow after which the --amp loss scale doubles (unset: 2000)"
    )
    min_loss_scale: float = field(1e-4, help="stop training with an error once the loss scale is at or below this")
    compile: bool = field(False, help="compile the model with torch.compile")
    empty_cache_freq: int = field(0, help="release PyTorch's cached CUDA memory after every N updates (0: never)")
