"""``--optimizer adafactor``: Adafactor (Shazeer & Stern, 2018) with fairseq's flags and defaults.

Per parameter and step ``t`` (fp32 math, any param dtype):

    lr_t    = lr, or min(1e-6 * t if warmup_init else 1e-2, 1 / sqrt(t)) with --relative-step,
              times max(eps2, RMS(p)) with --scale-parameter
    beta2_t = 1 - t ** decay_rate
    V       = beta2_t * V + (1 - beta2_t) * (g^2 + eps1)   (factored into row/col means for >= 2-D params)
    u       = g / sqrt(V);  u /= max(1, RMS(u) / clip_threshold);  u *= lr_t
    u       = m = beta1 * m + (1 - beta1) * u               (only with --beta1)
    p      -= weight_decay * lr_t * p + u

Two deliberate differences from fairseq's code, both where fairseq misbehaves:
* fairseq writes ``lr_t`` back into the param group, so with ``--scale-parameter`` and no
  ``--relative-step`` each parameter's step is also scaled by the RMS of every parameter before it; here
  each parameter uses its own ``lr_t`` and the group's ``lr`` stays the scheduler's.
* fairseq refuses ``--relative-step`` because ``--lr`` always has a value; here ``--relative-step``
  simply ignores the external learning rate, as the paper intends.
State keys are fairseq's (``step``, ``exp_avg``, ``exp_avg_sq_row``/``_col`` or ``exp_avg_sq``, ``RMS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch.optim.optimizer import ParamsT

from seqloom import registry
from seqloom.config import field


@dataclass(kw_only=True)
class AdafactorConfig:
    """Flags of fairseq's ``adafactor`` optimizer."""

    adafactor_eps: tuple[float, float] = field(
        (1e-30, 1e-3),
        help="two small constants: added to the squared gradients, and the floor of the parameter scale with --scale-parameter",
    )
    clip_threshold: float = field(
        1.0, help="cap on the root mean square of each update; larger updates are scaled down to it"
    )
    decay_rate: float = field(
        -0.8,
        help="exponent c of the second-moment decay 1 - t**c at step t (negative: the average reaches further back as training goes on)",
    )
    beta1: Optional[float] = field(
        None, help="decay of a first-moment (momentum) average (unset: no first moment, less memory)"
    )
    weight_decay: float = field(
        0.0,
        help="decoupled weight decay: each step shrinks the weights by this times the learning rate",
        aliases=("--wd",),
    )
    scale_parameter: bool = field(
        False, help="multiply the learning rate by the root mean square of each parameter tensor"
    )
    relative_step: bool = field(
        False, help="make the learning rate 1/sqrt(step) (capped by 0.01) instead of --lr and the scheduler"
    )
    warmup_init: bool = field(
        False, help="with --relative-step, grow the learning rate as 1e-6 * step at first (a built-in warmup)"
    )


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.norm(2) / (x.numel() ** 0.5)


def _factored_rsqrt(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """1/sqrt of the rank-1 estimate ``row * col / mean(row)``; row (..., R), col (..., C) -> (..., R, C)."""
    normalized_row = row / row.mean(dim=-1, keepdim=True)  # (..., R)
    return normalized_row.rsqrt()[..., :, None] * col.rsqrt()[..., None, :]  # outer product (..., R, C)


class Adafactor(torch.optim.Optimizer):
    """Adafactor as described in the module docstring."""

    def __init__(
        self,
        params: ParamsT,
        *,
        lr: float | None = None,
        eps: tuple[float, float] = (1e-30, 1e-3),
        clip_threshold: float = 1.0,
        decay_rate: float = -0.8,
        beta1: float | None = None,
        weight_decay: float = 0.0,
        scale_parameter: bool = False,
        relative_step: bool = False,
        warmup_init: bool = False,
    ) -> None:
        if warmup_init and not relative_step:
            raise ValueError("--warmup-init requires --relative-step")
        if lr is None and not relative_step:
            raise ValueError("Adafactor needs a learning rate (--lr) unless --relative-step is set")
        # the param-group keys are fairseq's (they are saved in checkpoints' optimizer state)
        hyper = {"lr": lr, "eps": eps, "clip_threshold": clip_threshold, "decay_rate": decay_rate, "beta1": beta1,
                 "weight_decay": weight_decay, "scale_parameter": scale_parameter, "relative_step": relative_step,
                 "warmup_init": warmup_init}  # fmt: skip
        super().__init__(params, hyper)

    @staticmethod
    def step_size(group: dict[str, Any], step: int, rms: float) -> float:
        """``lr_t`` of the module docstring for a parameter at ``step`` whose RMS is ``rms``."""
        if group["relative_step"]:  # 1/sqrt(step), under 0.01 (or under 1e-6 * step while warming up)
            ceiling = 1e-6 * step if group["warmup_init"] else 1e-2
            base = min(ceiling, 1.0 / math.sqrt(step))
        else:
            base = group["lr"]
        return (max(group["eps"][1], rms) if group["scale_parameter"] else 1.0) * base

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _init_state(self, state: dict[str, Any], grad: torch.Tensor, group: dict[str, Any]) -> None:
        state["step"] = 0
        if group["beta1"] is not None:
            state["exp_avg"] = torch.zeros_like(grad)
        if grad.dim() >= 2:
            state["exp_avg_sq_row"] = grad.new_zeros(grad.shape[:-1])
            state["exp_avg_sq_col"] = grad.new_zeros(grad.shape[:-2] + grad.shape[-1:])
        else:
            state["exp_avg_sq"] = torch.zeros_like(grad)
        state["RMS"] = 0

    def _scaled_gradient(self, grad: torch.Tensor, state: dict[str, Any], beta2t: float, eps1: float) -> torch.Tensor:
        """``g / sqrt(V)`` after folding ``g^2 + eps1`` into the second-moment estimate ``V``."""
        sq = grad * grad + eps1
        if grad.dim() >= 2:
            row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
            row.mul_(beta2t).add_(sq.mean(dim=-1), alpha=1.0 - beta2t)
            col.mul_(beta2t).add_(sq.mean(dim=-2), alpha=1.0 - beta2t)
            return _factored_rsqrt(row, col).mul_(grad)
        v = state["exp_avg_sq"]
        v.mul_(beta2t).add_(sq, alpha=1.0 - beta2t)
        return v.rsqrt().mul_(grad)

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        assert p.grad is not None  # step() updates only parameters with a gradient
        if p.grad.is_sparse:
            raise RuntimeError(
                "Adafactor: a parameter has a sparse gradient, which it cannot update (use dense embeddings)"
            )
        grad = p.grad.float()
        p32 = p.float() if p.dtype != torch.float32 else p
        state = self.state[p]
        if len(state) == 0:
            self._init_state(state, grad, group)
        state["step"] = int(state["step"]) + 1
        state["RMS"] = _rms(p32)
        lr_t = self.step_size(group, state["step"], float(state["RMS"]))
        beta2t = 1.0 - math.pow(state["step"], group["decay_rate"])
        update = self._scaled_gradient(grad, state, beta2t, group["eps"][0])
        update.div_((_rms(update) / group["clip_threshold"]).clamp_(min=1.0))
        update.mul_(lr_t)
        if group["beta1"] is not None:
            exp_avg = state["exp_avg"]
            exp_avg.mul_(group["beta1"]).add_(update, alpha=1 - group["beta1"])
            update = exp_avg
        if group["weight_decay"] != 0:
            p32.add_(p32, alpha=-group["weight_decay"] * lr_t)
        p32.sub_(update)
        if p32 is not p:
            p.copy_(p32)


@registry.OPTIMIZERS.register("adafactor", config=AdafactorConfig)
def build_adafactor(cfg: AdafactorConfig, params: ParamsT, lr: float) -> torch.optim.Optimizer:
    return Adafactor(
        params,
        lr=lr,
        eps=(float(cfg.adafactor_eps[0]), float(cfg.adafactor_eps[1])),
        clip_threshold=cfg.clip_threshold,
        decay_rate=cfg.decay_rate,
        beta1=cfg.beta1,
        weight_decay=cfg.weight_decay,
        scale_parameter=cfg.scale_parameter,
        relative_step=cfg.relative_step,
        warmup_init=cfg.warmup_init,
    )
