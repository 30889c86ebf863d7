"""Attention masks as pure functions.

Convention (fairseq's): a boolean mask is True where attention is *excluded* (padding, the future).
:func:`seqloom.modules.attention.attention` turns them into the "allowed" form that
``F.scaled_dot_product_attention`` expects.
"""

from __future__ import annotations

import torch
from torch import Tensor


def padding_mask(tokens: Tensor, pad: int) -> Tensor:
    """``(B, T)`` bool, True at padding positions of ``tokens`` ``(B, T)``."""
    return tokens.eq(pad)


def causal_mask(
    tgt_len: int, src_len: int | None = None, *, offset: int = 0, device: torch.device | None = None
) -> Tensor:
    """``(T, S)`` bool, True where query ``t`` may *not* see key ``s`` (the future).

    Query ``t`` sits at absolute position ``offset + t`` and key ``s`` at position ``s``; with a KV cache
    ``offset`` is the number of cached steps and ``src_len = offset + tgt_len``.
    """
    src_len = tgt_len + offset if src_len is None else src_len
    rows = torch.arange(tgt_len, device=device).unsqueeze(1) + offset  # (T, 1)
    cols = torch.arange(src_len, device=device).unsqueeze(0)  # (1, S)
    return cols > rows


def any_true(mask: Tensor) -> bool:
    """Whether ``mask`` has a True entry, to skip applying an empty mask (fairseq's ``has_pads``).

    While ``torch.compile`` traces, it answers True without reading the data: the mask is then simply
    applied (same result), and the graph has no data-dependent break.
    """
    return torch.compiler.is_compiling() or bool(mask.any())


def combine_masks(key_padding: Tensor | None, future: Tensor | None) -> Tensor | None:
    """Merges a ``(B, S)`` key padding mask and a ``(T, S)`` future mask into ``(B, 1, T|1, S)`` (True = excluded)."""
    if key_padding is None and future is None:
        return None
    if key_padding is None:
        assert future is not None
        return future[None, None]  # (1, 1, T, S)
    pad = key_padding[:, None, None, :]  # (B, 1, 1, S)
    return pad if future is None else pad | future[None, None]


def output_positions(keep: Tensor) -> Tensor:
    """The row-major flat indices ``(N,)`` of the True entries of ``keep`` ``(B, T)``: what criterions pass
    models as ``output_mask``. Found here, outside the model, their count is an input size to a compiled
    model instead of a data-dependent one inside it (which split ``--compile``'s graph in two)."""
    return keep.reshape(-1).nonzero().squeeze(1)


def select_positions(x: Tensor, output_mask: Tensor) -> Tensor:
    """The rows of ``x`` ``(B, T, C)`` that ``output_mask`` picks, ``(N, C)`` in row-major order: a ``(B, T)``
    bool mask, or the flat indices of :func:`output_positions`."""
    if output_mask.dtype == torch.bool:
        return x[output_mask]
    return x.reshape(-1, x.size(-1)).index_select(0, output_mask)


def count_positions(output_mask: Tensor) -> int:
    """How many rows :func:`select_positions` picks."""
    return int(output_mask.sum()) if output_mask.dtype == torch.bool else output_mask.numel()
