"""Config groups shared by several commands, with fairseq's option names and defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from seqloom.config.options import field

LogFormat = Literal["json", "none", "simple", "tqdm"]


@dataclass(kw_only=True)
class CommonConfig:
    """Options every command takes: logging, seeding, device and precision."""

    no_progress_bar: bool = field(False, help="disable the progress bar")
    log_interval: int = field(100, help="log progress every N batches (when the progress bar is off)")
    log_format: Optional[LogFormat] = field(None, help="log format to use")
    log_file: Optional[str] = field(None, help="also write logs to this file")
    tensorboard_logdir: Optional[str] = field(None, help="write TensorBoard logs to this directory")
    seed: int = field(1, help="pseudo random number generator seed")
    cpu: bool = field(False, help="use the CPU even when CUDA is available")
    bf16: bool = field(False, help="use bfloat16 autocast")
    fp16: bool = field(False, help="use float16 with dynamic loss scaling")
    amp: bool = field(False, help="use automatic mixed precision (float16 autocast, dynamic loss scaling)")
    fp16_init_scale: int = field(128, help="initial loss scale for --fp16/--amp")
    fp16_scale_window: Optional[int] = field(None, help="updates without overflow before the loss scale grows")
    min_loss_scale: float = field(1e-4, help="stop training when the loss scale falls below this")
    compile: bool = field(False, help="compile the model with torch.compile")
