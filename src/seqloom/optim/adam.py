"""``--optimizer adam``: fairseq's Adam, whose weight decay is decoupled (AdamW).

fairseq's Adam applies weight decay as ``p -= weight_decay * lr * p`` before the Adam step, which is
exactly ``torch.optim.AdamW``; we therefore build torch's AdamW with its fused (or foreach) kernel.
One difference remains, documented and tested: fairseq adds ``eps`` to ``sqrt(v)`` before the bias
correction of ``v`` (``step = lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``) while torch adds
it after (``lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``). They agree whenever
``sqrt(v) >> eps`` (any gradient above ~1e-6). ``--use-old-adam`` selects :class:`FairseqAdam`, a
small re-implementation of fairseq's exact update, for bit-level parity runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from seqloom import registry
from seqloom.config import field


@dataclass(kw_only=True)
class AdamConfig:
    """Flags of fairseq's ``adam`` optimizer."""

    adam_betas: tuple[float, float] = field(
        (0.9, 0.999), help="decay rates of Adam's averages of the gradient and of its square, such as '(0.9, 0.98)'"
    )
    adam_eps: float = field(
        1e-8, help="added to the square root of the squared-gradient average, keeping the step finite"
    )
    weight_decay: float = field(
        0.0, help="decoupled weight decay: each step does p -= weight_decay * lr * p", aliases=("--wd",)
    )
    use_old_adam: bool = field(
        False, help="use the exact fairseq Adam update (eps before bias correction), no fused kernel"
    )
    fp16_adam_stats: bool = field(
        False, help="keep the Adam moments in fp16 (not supported: refused, fairseq needs apex for it)"
    )


def _fused_supported(params: list[torch.Tensor]) -> bool:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    devices = set(_get_fused_kernels_supported_devices())
    return all(p.is_floating_point() and p.device.type in devices for p in params)


@registry.OPTIMIZERS.register("adam", config=AdamConfig)
def build_adam(cfg: AdamConfig, params: Iterable[Any], lr: float) -> torch.optim.Optimizer:
    """torch's AdamW (fused kernel where the device has one), or :class:`FairseqAdam` with ``--use-old-adam``."""
    if cfg.fp16_adam_stats:
        raise ValueError(
            "--fp16-adam-stats: fairseq only supports it with apex's FusedAdamV1 on GPU; seqloom keeps the Adam "
            "moments in fp32. Remove the flag."
        )
    params = list(params)
    betas = (float(cfg.adam_betas[0]), float(cfg.adam_betas[1]))
    if cfg.use_old_adam:
        return FairseqAdam(params, lr=lr, betas=betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    flat = [p for p in _flat_params(params)]
    kernel = {"fused": True} if _fused_supported(flat) else {"foreach": True}
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay, **kernel)


def _flat_params(params: list[Any]) -> Iterable[torch.Tensor]:
    for p in params:
        if isinstance(p, dict):
            yield from p["params"]
        else:
            yield p


class FairseqAdam(torch.optim.Optimizer):
    """fairseq's Adam update, exactly: decoupled weight decay, then ``p -= step_size * m / (sqrt(v) + eps)``
    with ``step_size = lr * sqrt(1 - beta2^t) / (1 - beta1^t)``. Moments are kept in fp32.

    The state keys (``step`` as an int, ``exp_avg``, ``exp_avg_sq``) are fairseq's, so
    ``last_optimizer_state`` of a fairseq checkpoint loads unchanged.
    """

    def __init__(
        self,
        params: ParamsT,
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=False))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        assert p.grad is not None  # step() updates only parameters with a gradient
        if p.grad.is_sparse:
            raise RuntimeError("FairseqAdam does not support sparse gradients")
        grad = p.grad.float()
        p32 = p.float() if p.dtype != torch.float32 else p
        state = self.state[p]
        if len(state) == 0:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p32)
            state["exp_avg_sq"] = torch.zeros_like(p32)
        state["step"] = int(state["step"]) + 1
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = v.sqrt().add_(group["eps"])
        t = state["step"]
        step_size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        if group["weight_decay"] != 0:
            p32.add_(p32, alpha=-group["weight_decay"] * group["lr"])
        p32.addcdiv_(m, denom, value=-step_size)
        if p32 is not p:
            p.copy_(p32)
