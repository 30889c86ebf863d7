"""Activation functions by fairseq's ``--activation-fn`` names."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

ACTIVATION_FNS = ("relu", "relu_squared", "gelu", "gelu_fast", "gelu_accurate", "tanh", "linear", "swish")


def gelu(x: Tensor) -> Tensor:
    """Exact (erf) GELU computed in float32, as fairseq's ``gelu``."""
    return F.gelu(x.float()).type_as(x)


def gelu_accurate(x: Tensor) -> Tensor:
    """The tanh approximation of GELU (fairseq's ``gelu_accurate``, alias ``gelu_fast``)."""
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def relu_squared(x: Tensor) -> Tensor:
    return F.relu(x).pow(2)


def identity(x: Tensor) -> Tensor:
    return x


def activation_fn(name: str) -> Callable[[Tensor], Tensor]:
    """The function for ``--activation-fn name``."""
    table: dict[str, Callable[[Tensor], Tensor]] = {
        "relu": F.relu,
        "relu_squared": relu_squared,
        "gelu": gelu,
        "gelu_fast": gelu_accurate,
        "gelu_accurate": gelu_accurate,
        "tanh": torch.tanh,
        "linear": identity,
        "swish": F.silu,
    }
    if name not in table:
        raise ValueError(f"--activation-fn {name!r} is not supported; choose one of {', '.join(ACTIVATION_FNS)}")
    return table[name]
