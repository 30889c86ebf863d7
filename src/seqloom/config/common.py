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
    wandb_project: Optional[str] = field(None, help="Weights and Biases project name to use for logging")
    seed: int = field(1, help="pseudo random number generator seed")
    cpu: bool = field(False, help="use the CPU even when CUDA is available")
    bf16: bool = field(False, help="use bfloat16 autocast")
    fp16: bool = field(False, help="use float16 with dynamic loss scaling")
    amp: bool = field(False, help="use automatic mixed precision (float16 autocast, dynamic loss scaling)")
    memory_efficient_bf16: bool = field(False, help="use bfloat16 (implies --bf16; weights stay float32 here)")
    memory_efficient_fp16: bool = field(False, help="use float16 (implies --fp16; weights stay float32 here)")
    fp16_no_flatten_grads: bool = field(False, help="don't flatten FP16 grads tensor (seqloom never flattens them)")
    fp16_init_scale: int = field(128, help="initial loss scale for --fp16")
    fp16_scale_window: Optional[int] = field(None, help="updates without overflow before the loss scale grows")
    fp16_scale_tolerance: float = field(0.0, help="pct of updates that can overflow before decreasing the loss scale")
    threshold_loss_scale: Optional[float] = field(None, help="threshold FP16 loss scale from below")
    amp_batch_retries: int = field(2, help="number of retries of same batch after reducing loss scale with AMP")
    amp_init_scale: int = field(2**7, help="default AMP loss scale")
    amp_scale_window: Optional[int] = field(None, help="number of updates before increasing AMP loss scale")
    min_loss_scale: float = field(1e-4, help="stop training when the loss scale reaches this minimum")
    compile: bool = field(False, help="compile the model with torch.compile")
    empty_cache_freq: int = field(0, help="how often to clear the PyTorch CUDA cache (0 to disable)")
