"""``--optimizer sgd`` and ``--optimizer adagrad``: torch's optimizers with fairseq's flags.

fairseq wraps ``torch.optim.SGD`` and ``torch.optim.Adagrad`` unchanged (weight decay is the coupled
L2 term of torch), so we do the same, with the foreach kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.optim.optimizer import ParamsT

from seqloom import registry
from seqloom.config import field


@dataclass(kw_only=True)
class SGDConfig:
    """Flags of fairseq's ``sgd`` optimizer."""

    momentum: float = field(0.0, help="share of the previous step kept in each step (0: plain gradient descent)")
    weight_decay: float = field(
        0.0, help="L2 penalty: this times the weights is added to the gradient", aliases=("--wd",)
    )


@dataclass(kw_only=True)
class AdagradConfig:
    """Flags of fairseq's ``adagrad`` optimizer."""

    weight_decay: float = field(
        0.0, help="L2 penalty: this times the weights is added to the gradient", aliases=("--wd",)
    )


@registry.OPTIMIZERS.register("sgd", config=SGDConfig)
def build_sgd(cfg: SGDConfig, params: ParamsT, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)


@registry.OPTIMIZERS.register("adagrad", config=AdagradConfig)
def build_adagrad(cfg: AdagradConfig, params: ParamsT, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(params, lr=lr, weight_decay=cfg.weight_decay, foreach=True)
