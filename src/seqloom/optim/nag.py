"""``--optimizer nag``: fairseq's Nesterov accelerated gradient.

fairseq's NAG is not torch's ``SGD(nesterov=True)``: it keeps the *negative, lr-scaled* velocity
``buf`` and rescales it when the learning rate changes (``lr_correct = lr / lr_old``):

    p   <- p * (1 - lr * wd)                               (decoupled weight decay)
    p   <- p + momentum^2 * lr_correct * buf - (1 + momentum) * lr * g
    buf <- momentum * lr_correct * buf - lr * g

State keys (``momentum_buffer``, the group's ``lr_old``) are fairseq's, so its checkpoints load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from seqloom import registry
from seqloom.config import field


@dataclass(kw_only=True)
class NAGConfig:
    """Flags of fairseq's ``nag`` optimizer."""

    momentum: float = field(0.99, help="share of the previous step kept in each Nesterov momentum step")
    weight_decay: float = field(
        0.0, help="each step shrinks the weights by this times the learning rate", aliases=("--wd",)
    )


class NAG(torch.optim.Optimizer):
    """Nesterov momentum in fairseq's formulation (see the module docstring); fp32 math for any param dtype."""

    def __init__(self, params: ParamsT, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, lr_old=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr = group["lr"]
            lr_correct = lr / group.get("lr_old", lr)
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, lr=lr, lr_correct=lr_correct, group=group)
            group["lr_old"] = lr
        return loss

    def _update(self, p: torch.Tensor, *, lr: float, lr_correct: float, group: dict[str, Any]) -> None:
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        assert p.grad is not None  # step() updates only parameters with a gradient
        grad = p.grad.float()
        p32 = p.float() if p.dtype != torch.float32 else p
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad)
        buf = state["momentum_buffer"]
        if weight_decay != 0:
            p32.mul_(1 - lr * weight_decay)
        p32.add_(buf, alpha=momentum * momentum * lr_correct)
        p32.add_(grad, alpha=-(1 + momentum) * lr)
        buf.mul_(momentum * lr_correct).add_(grad, alpha=-lr)
        if p32 is not p:
            p.copy_(p32)


@registry.OPTIMIZERS.register("nag", config=NAGConfig)
def build_nag(cfg: NAGConfig, params: ParamsT, lr: float) -> torch.optim.Optimizer:
    return NAG(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
