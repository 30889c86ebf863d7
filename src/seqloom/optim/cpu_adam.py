"""``--optimizer cpu_adam``: fairseq's DeepSpeed CPU Adam, for parameters kept on the CPU.

fairseq's ``cpu_adam`` runs DeepSpeed's CPU Adam in its AdamW mode (fairseq's own docstring: "most closely
analogous to torch.optim.AdamW"), typically with ``--ddp-backend fully_sharded --cpu-offload``: decoupled
weight decay, ``eps`` added after the bias correction of ``v``. That is torch's AdamW update, which seqloom
runs with torch's fused (or foreach) kernel wherever the parameters are (with ``--cpu-offload``, on the CPU).
fairseq's version also needs DeepSpeed and a CUDA device; this one needs neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from seqloom import registry
from seqloom.config import field
from seqloom.optim.adam import _flat_params, _fused_supported


@dataclass(kw_only=True)
class CPUAdamConfig:
    """Flags of fairseq's ``cpu_adam`` optimizer."""

    adam_betas: tuple[float, float] = field(
        (0.9, 0.999), help="decay rates of Adam's averages of the gradient and of its square, such as '(0.9, 0.98)'"
    )
    adam_eps: float = field(
        1e-8, help="added to the square root of the squared-gradient average, keeping the step finite"
    )
    weight_decay: float = field(
        0.0, help="decoupled weight decay, as AdamW: each step does p -= weight_decay * lr * p", aliases=("--wd",)
    )
    fp16_adam_stats: bool = field(False, help="keep the Adam moments in fp16 (not supported: they stay fp32)")


@registry.OPTIMIZERS.register("cpu_adam", config=CPUAdamConfig)
def build_cpu_adam(cfg: CPUAdamConfig, params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    """torch's AdamW: DeepSpeed's CPU Adam update (AdamW mode, bias correction on)."""
    if cfg.fp16_adam_stats:
        raise ValueError("--fp16-adam-stats: seqloom keeps the Adam moments in fp32; remove the flag")
    params = list(params)
    kernel = {"fused": True} if _fused_supported(list(_flat_params(params))) else {"foreach": True}
    betas = (float(cfg.adam_betas[0]), float(cfg.adam_betas[1]))
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay, **kernel)
