"""``--optimizer adamax`` and ``--optimizer adadelta`` with fairseq's flags and update rules.

``adadelta`` is torch's ``Adadelta``, as fairseq wraps it. fairseq's ``adamax`` is its own rule, not torch's
``Adamax`` (which adds ``eps`` inside the infinity norm and couples weight decay to the gradient):

    m   <- beta1 * m + (1 - beta1) * g
    u   <- max(beta2 * u, |g|)
    p   <- p - wd * lr * p                                       (decoupled weight decay)
    p   <- p - lr / (1 - beta1^t) * m / (u + eps)                (without --no-bias-correction)

State keys (``step``, ``exp_avg``, ``exp_inf``) are fairseq's, so its checkpoints load.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.optim.optimizer import ParamsT

from seqloom import registry
from seqloom.config import field


@dataclass(kw_only=True)
class AdamaxConfig:
    """Flags of fairseq's ``adamax`` optimizer."""

    adamax_betas: str = field(
        "(0.9, 0.999)", help="decay rates of Adamax's gradient average and of its running maximum of gradient sizes"
    )
    adamax_eps: float = field(1e-8, help="added to the running maximum before dividing, keeping the step finite")
    weight_decay: float = field(
        0.0, help="L2 penalty: this times the weights is added to the gradient", aliases=("--wd",)
    )
    no_bias_correction: bool = field(
        False, help="leave out the correction of the gradient average's bias towards zero early in training"
    )


@dataclass(kw_only=True)
class AdadeltaConfig:
    """Flags of fairseq's ``adadelta`` optimizer."""

    adadelta_rho: float = field(0.9, help="decay rate of Adadelta's averages of squared gradients and squared updates")
    adadelta_eps: float = field(1e-6, help="added inside Adadelta's square roots, keeping the step finite")
    weight_decay: float = field(
        0.0, help="L2 penalty: this times the weights is added to the gradient", aliases=("--wd",)
    )
    anneal_eps: bool = field(False, help="accepted and unused, as in fairseq")


class Adamax(torch.optim.Optimizer):
    """fairseq's Adamax (see the module docstring); fp32 math for any parameter dtype."""

    def __init__(self, params: ParamsT, *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, bias_correction: bool = True) -> None:  # fmt: skip
        for name, value, ok in (("learning rate", lr, lr >= 0), ("epsilon", eps, eps >= 0),
                                ("beta1", betas[0], 0 <= betas[0] < 1), ("beta2", betas[1], 0 <= betas[1] < 1),
                                ("weight decay", weight_decay, weight_decay >= 0)):  # fmt: skip
            if not ok:
                raise ValueError(f"adamax: invalid {name} {value}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      bias_correction=bias_correction))  # fmt: skip

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(
                        "Adamax: a parameter has a sparse gradient, which it cannot update (use dense embeddings)"
                    )
                grad = p.grad.float()
                p32 = p.float() if p.dtype != torch.float32 else p
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p32)
                    state["exp_inf"] = torch.zeros_like(p32)
                exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                torch.maximum(exp_inf.mul_(beta2), grad.abs(), out=exp_inf)
                step_size = group["lr"]
                if group["bias_correction"]:
                    step_size /= 1 - beta1 ** state["step"]
                if group["weight_decay"] != 0:
                    p32.add_(p32, alpha=-group["weight_decay"] * group["lr"])
                p32.addcdiv_(exp_avg, exp_inf.add(group["eps"]), value=-step_size)
                if p32 is not p:
                    p.copy_(p32)
        return loss


def parse_betas(text: str) -> tuple[float, float]:
    """``--adamax-betas '(0.9, 0.999)'`` -> (0.9, 0.999), read as a literal (fairseq ``eval``s it)."""
    try:
        betas = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        betas = None
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"--adamax-betas: expected two numbers like '(0.9, 0.999)', got {text!r}")
    return float(betas[0]), float(betas[1])


@registry.OPTIMIZERS.register("adamax", config=AdamaxConfig)
def build_adamax(cfg: AdamaxConfig, params: ParamsT, lr: float) -> torch.optim.Optimizer:
    return Adamax(params, lr=lr, betas=parse_betas(cfg.adamax_betas), eps=cfg.adamax_eps,
                  weight_decay=cfg.weight_decay, bias_correction=not cfg.no_bias_correction)  # fmt: skip


@registry.OPTIMIZERS.register("adadelta", config=AdadeltaConfig)
def build_adadelta(cfg: AdadeltaConfig, params: ParamsT, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adadelta(params, lr=lr, rho=cfg.adadelta_rho, eps=cfg.adadelta_eps,
                                weight_decay=cfg.weight_decay, foreach=True)  # fmt: skip
