"""The vocabulary projection, with a fast path for vocabularies whose size is not a multiple of 8.

On the CPU, MKL's product ``x @ W.T`` writes its ``(N, V)`` output about twice as slowly when ``V`` is not a
multiple of 8 (BART's 4,089 or 50,265 symbols: a padded dictionary plus ``<mask>``); measured on this
project's AVX2 machine, 36 ms against 16 ms for 1,900 rows of a 64-wide model. The padded route multiplies
by the weight with zero rows appended up to the next multiple of 8 and keeps the first ``V`` columns:

* training (gradients on): :class:`_PaddedLinear` returns a ``(..., V)`` view of the padded output and takes
  the ``(..., V)`` gradient directly (those products are not slowed by an odd ``V``); the fused loss reads
  the view as it is;
* inference: a contiguous copy of the ``V`` columns (``log_softmax`` of a column view is slower than the copy);
* incremental decoding (:class:`PaddedLogits`): the padded buffer itself, its extra columns ``-inf``, so the
  decoder's ``log_softmax`` runs over whole rows and the padded weight is made once per decoding pass.

Few rows gain nothing, so they keep the plain product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALIGN = 8
MIN_PADDED_ROWS = 65  # at 64 rows the two products cost the same; at 128 the padded one is twice as fast


def padded_rows(weight: Tensor) -> Tensor:
    """``weight`` ``(V, C)`` with zero rows appended up to a multiple of :data:`ALIGN` rows."""
    return torch.cat([weight, weight.new_zeros(-weight.size(0) % ALIGN, weight.size(1))])


class _PaddedLinear(torch.autograd.Function):
    """``x @ weight.T`` through a zero-padded weight; returns a ``(..., V)`` view of the padded output."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor) -> Tensor:
        out = torch.mm(x.reshape(-1, x.size(-1)), padded_rows(weight).t())
        ctx.save_for_backward(x, weight)
        return out.view(*x.shape[:-1], out.size(1))[..., : weight.size(0)]

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
    if not uses_padded_product(x, weight):
        return F.linear(x, weight)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _PaddedLinear.apply(x, weight)
    out = torch.mm(x.reshape(-1, x.size(-1)), padded_rows(weight).t())
    return out[:, : weight.size(0)].contiguous().view(*x.shape[:-1], weight.size(0))


@dataclass
class PaddedLogits:
    """Decoder logits as a ``(..., V8)`` buffer whose columns past ``vocab_size`` are ``-inf``.

    ``log_softmax`` over a whole row equals that of its first ``vocab_size`` columns (their exponentials
    are 0), without first copying the columns out. :attr:`logits` is the ``(..., V)`` view.
    """

    padded: Tensor
    vocab_size: int

    @property
    def logits(self) -> Tensor:
        return self.padded[..., : self.vocab_size]


class VocabProjection(nn.Linear):
    """A bias-free ``nn.Linear`` (same ``weight`` key, same initialisation) whose product is :func:`vocab_logits`."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return vocab_logits(x, self.weight)

    def decoding(self, x: Tensor, memo: dict[str, Tensor]) -> Tensor | PaddedLogits:
        """The logits of a decoding step without gradients: :class:`PaddedLogits` where the padded route
        pays, the padded weight kept in ``memo`` (a dict living for one decoding pass)."""
        if torch.is_grad_enabled() or not uses_padded_product(x, self.weight):
            return self(x)
        if "padded_weight" not in memo:
            memo["padded_weight"] = padded_rows(self.weight)
        out = torch.matmul(x, memo["padded_weight"].t())
        out[..., self.weight.size(0) :] = -torch.inf
        return PaddedLogits(out, self.weight.size(0))
