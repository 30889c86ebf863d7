"""``--optimizer lamb``: fairseq's LAMB, which is apex's ``FusedLAMB`` with fairseq's three options.

fairseq builds ``apex.optimizers.FusedLAMB(params, lr, betas=--lamb-betas, eps=--lamb-eps,
weight_decay=--weight-decay)`` and leaves apex's other defaults: bias correction on, gradient averaging on,
decoupled (AdamW-style) weight decay, ``max_grad_norm=1.0``, ``use_nvlamb=False``. That needs apex's CUDA
extension, so fairseq's ``lamb`` runs on NVIDIA GPUs only. :class:`Lamb` is apex's update written with torch
ops, for any device. Per step, in float32:

1. the global L2 norm of all gradients; if it exceeds ``max_grad_norm`` every gradient is divided by
   ``norm / max_grad_norm`` (a clip of its own, after fairseq's ``--clip-norm``);
2. Adam's moments ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2`` and the update
   ``u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd * p``;
3. ``p -= lr * r * u``, with the trust ratio ``r = ||p|| / ||u||`` per tensor (1 where either norm is 0).
   apex applies ``r`` only where the weight decay is not 0 (or with ``use_nvlamb``): with fairseq's default
   ``--weight-decay 0``, LAMB is Adam with that global clip.

The state has apex's names (``exp_avg``, ``exp_avg_sq`` per parameter, ``step`` in each param group), so a
fairseq LAMB checkpoint's ``last_optimizer_state`` loads unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from seqloom import registry
from seqloom.config import field


@dataclass(kw_only=True)
class LambConfig:
    """Flags of fairseq's ``lamb`` optimizer."""

    lamb_betas: tuple[float, float] = field(
        (0.9, 0.999), help="decay rates of LAMB's averages of the gradient and of its square, such as '(0.9, 0.999)'"
    )
    lamb_eps: float = field(
        1e-8, help="added to the square root of the squared-gradient average, keeping the step finite"
    )
    weight_decay: float = field(
        0.0, help='decoupled weight decay, inside the trust ratio (0 also turns the trust ratio off, as apex does)',
        aliases=("--wd",),
    )  # fmt: skip


@registry.OPTIMIZERS.register("lamb", config=LambConfig)
def build_lamb(cfg: LambConfig, params: ParamsT, lr: float) -> torch.optim.Optimizer:
    """:class:`Lamb` with fairseq's arguments and apex's other defaults."""
    betas = (float(cfg.lamb_betas[0]), float(cfg.lamb_betas[1]))
    return Lamb(params, lr=lr, betas=betas, eps=cfg.lamb_eps, weight_decay=cfg.weight_decay)


class Lamb(torch.optim.Optimizer):
    """apex's ``FusedLAMB`` update (arguments and defaults of the same names) on any device.

    Moments are kept in each parameter's dtype; the arithmetic runs in float32 (float64 for float64 weights), as
    apex's kernel does for its float16 and float32 ones.
    ``max_grad_norm`` is read from the constructor's defaults, not per group (also as apex).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        bias_correction: bool = True,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        *,
        adam_w_mode: bool = True,
        grad_averaging: bool = True,
        max_grad_norm: float = 1.0,
        use_nvlamb: bool = False,
    ) -> None:
        defaults = dict(lr=lr, bias_correction=bias_correction, betas=betas, eps=eps, weight_decay=weight_decay,
                        grad_averaging=grad_averaging, max_grad_norm=max_grad_norm)  # fmt: skip
        super().__init__(params, defaults)
        self.adam_w_mode = adam_w_mode
        self.use_nvlamb = use_nvlamb

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return loss
        if any(g.is_sparse for g in grads):
            raise RuntimeError("LAMB does not support sparse gradients")
        norms = torch._foreach_norm([g.float() for g in grads])
        global_norm = torch.linalg.vector_norm(torch.stack(norms))
        # apex divides by norm / max_grad_norm only when the norm exceeds it
        divisor = torch.clamp(global_norm / self.defaults["max_grad_norm"], min=1.0)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                group["step"] = group.get("step", 0) + 1
                self._update(group, params, divisor)
        return loss

    def _update(self, group: dict[str, Any], params: list[Tensor], divisor: Tensor) -> None:
        beta1, beta2 = group["betas"]
        step, decay, lr = group["step"], group["weight_decay"], group["lr"]
        correction1 = 1 - beta1**step if group["bias_correction"] else 1.0
        correction2 = 1 - beta2**step if group["bias_correction"] else 1.0
        beta3 = 1 - beta1 if group["grad_averaging"] else 1.0
        for p in params:
            if not self.state[p]:
                self.state[p]["exp_avg"] = torch.zeros_like(p)
                self.state[p]["exp_avg_sq"] = torch.zeros_like(p)
        stored_m = [self.state[p]["exp_avg"] for p in params]
        stored_v = [self.state[p]["exp_avg_sq"] for p in params]
        work = [p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32 for p in params]
        weights = [p.to(dtype) for p, dtype in zip(params, work)]  # the same tensors where already of that dtype
        m = [t.to(dtype) for t, dtype in zip(stored_m, work)]
        v = [t.to(dtype) for t, dtype in zip(stored_v, work)]
        g = torch._foreach_div([p.grad.to(dtype) for p, dtype in zip(params, work)], divisor)  # type: ignore[union-attr]
        if not self.adam_w_mode and decay != 0:  # L2 mode: the decay joins the gradient
            torch._foreach_add_(g, weights, alpha=decay)
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, g, alpha=beta3)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=1 - beta2)
        denom = torch._foreach_div(v, correction2)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, group["eps"])
        update = torch._foreach_div(m, correction1)
        torch._foreach_div_(update, denom)
        if self.adam_w_mode and decay != 0:
            torch._foreach_add_(update, weights, alpha=decay)
        if self.use_nvlamb or decay != 0:
            weight_norm = torch.stack(torch._foreach_norm(weights))  # (P,)
            update_norm = torch.stack(torch._foreach_norm(update))  # (P,)
            trust = torch.where((weight_norm != 0) & (update_norm != 0), weight_norm / update_norm, 1.0)
            torch._foreach_mul_(update, list((lr * trust).unbind()))
        else:
            torch._foreach_mul_(update, lr)
        torch._foreach_sub_(weights, update)
        for kept, worked in ((params, weights), (stored_m, m), (stored_v, v)):
            for s, w in zip(kept, worked):
                if s is not w:
                    s.copy_(w)
