"""The vocabulary projection, with a fast path for vocabularies whose size is not a multiple of 8.

On the CPU, MKL's product ``x @ W.T`` writes its ``(N, V)`` output about twice as slowly when ``V`` is not a
multiple of 8 (BART's 4,089 or 50,265 symbols: a padded dictionary plus ``<mask>``); measured on this
project's AVX2 machine, 36 ms against 16 ms for 1,900 rows of a 64-wide model. :func:`vocab_logits` pads the
weight with zero rows to the next multiple of 8, multiplies, and returns the first ``V`` columns as a view.
The backward pass takes the ``(N, V)`` gradient directly (those products are not slowed by an odd ``V``), so
the padding costs one copy of the weight per call. Few rows gain nothing, so they keep the plain product.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALIGN = 8
MIN_PADDED_ROWS = 65  # at 64 rows the two products cost the same; at 128 the padded one is twice as fast


class _PaddedLinear(torch.autograd.Function):
    """``x @ weight.T`` through a zero-padded weight; returns a ``(..., V)`` view of the padded output."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor) -> Tensor:
        vocab, dim = weight.shape
        padded = torch.cat([weight, weight.new_zeros(-vocab % ALIGN, dim)])
        out = torch.mm(x.reshape(-1, dim), padded.t())
        ctx.save_for_backward(x, weight)
        return out.view(*x.shape[:-1], out.size(1))[..., :vocab]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_2d = grad.reshape(-1, weight.size(0))
        grad_x = torch.mm(grad_2d, weight).view_as(x) if ctx.needs_input_grad[0] else None
        grad_w = torch.mm(grad_2d.t(), x.reshape(-1, x.size(-1))) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w


def uses_padded_product(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`vocab_logits` takes the padded route for these operands."""
    return (
        weight.size(0) % ALIGN != 0
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and x.numel() >= MIN_PADDED_ROWS * x.size(-1)
    )


def vocab_logits(x: Tensor, weight: Tensor) -> Tensor:
    """``F.linear(x, weight)`` for a bias-free ``(V, C)`` vocabulary matrix; equal to it up to rounding."""
    if uses_padded_product(x, weight):
        return _PaddedLinear.apply(x, weight)
    return F.linear(x, weight)


class VocabProjection(nn.Linear):
    """A bias-free ``nn.Linear`` (same ``weight`` key, same initialisation) whose product is :func:`vocab_logits`."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return vocab_logits(x, self.weight)
