"""Positional embeddings exactly as fairseq computes them.

Positions count from ``padding_idx + 1`` (fairseq's offset): a non-pad token at index ``i`` of its
sequence, after any left padding, gets position ``padding_idx + 1 + i``; pad tokens get ``padding_idx``,
whose sinusoidal row is zero and whose learned row is the (zero, frozen) padding row.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def make_positions(tokens: Tensor, padding_idx: int) -> Tensor:
    """``(B, T)`` long positions of ``tokens`` ``(B, T)``: pads get ``padding_idx``, others count up from it.

    Left padding is skipped over: the first real token of each row is always ``padding_idx + 1``.
    """
    real = tokens != padding_idx  # (B, T)
    return torch.where(real, real.cumsum(dim=1) + padding_idx, padding_idx)  # (B, T) long


def sinusoidal_table(num_embeddings: int, embedding_dim: int, padding_idx: int | None) -> Tensor:
    """``(N, C)`` float32 sinusoidal table, the tensor2tensor variant fairseq uses: ``[sin | cos]`` halves.

    Row ``padding_idx`` is zero; an odd ``embedding_dim`` gets a zero last column.
    """
    half = embedding_dim // 2
    # wavelengths grow geometrically from 2*pi to 2*pi*10000 over the half (this exact arithmetic: fairseq's values)
    inverse_wavelength = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000) / (half - 1)))  # (C/2,)
    angles = torch.outer(torch.arange(num_embeddings, dtype=torch.float), inverse_wavelength)  # (N, C/2)
    table = torch.zeros(num_embeddings, embedding_dim)  # an odd width keeps a zero last column
    table[:, :half] = angles.sin()
    table[:, half : 2 * half] = angles.cos()
    if padding_idx is not None:
        table[padding_idx] = 0
    return table


class SinusoidalPositionalEmbedding(nn.Module):
    """Fixed sinusoidal positions; the table is a non-persistent buffer (never in a state dict), grown on demand."""

    max_positions: int = 100_000  # fairseq's limit for sinusoidal positions
    weights: Tensor  # (N, C) table, a non-persistent buffer

    def __init__(self, embedding_dim: int, padding_idx: int, init_size: int = 1024) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.register_buffer("weights", sinusoidal_table(init_size, embedding_dim, padding_idx), persistent=False)

    def _table(self, needed: int) -> Tensor:
        if needed > self.weights.size(0):
            with torch.inference_mode(False):  # grown while decoding: still an ordinary buffer for later training
                grown = sinusoidal_table(needed, self.embedding_dim, self.padding_idx).to(self.weights)
            self.weights = grown
        return self.weights

    def forward(self, positions: Tensor, *, span: int) -> Tensor:
        """``positions`` ``(B, T)`` long -> ``(B, T, C)`` float32 embeddings.

        ``span`` is the longest sequence the positions can come from (cached steps + new ones); it sizes
        the table without reading ``positions`` back from the device.
        """
        table = self._table(self.padding_idx + 1 + span)
        return table.index_select(0, positions.reshape(-1)).view(*positions.shape, -1).detach()  # (B, T, C)

    def steps(self, first: int, length: int) -> Tensor:
        """``(1, length, C)`` embeddings of positions ``first .. first + length - 1`` (one decoding step's, the
        same for every row): a slice of the table, no lookup."""
        return self._table(first + length)[first : first + length].unsqueeze(0)


class LearnedPositionalEmbedding(nn.Embedding):
    """Learned positions: an embedding of ``max_positions + padding_idx + 1`` rows (fairseq's offset)."""

    def __init__(self, max_positions: int, embedding_dim: int, padding_idx: int) -> None:
        super().__init__(max_positions + padding_idx + 1, embedding_dim, padding_idx)
        nn.init.normal_(self.weight, mean=0, std=embedding_dim**-0.5)
        nn.init.constant_(self.weight[padding_idx], 0)
        self.max_positions = max_positions

    def forward(self, positions: Tensor, *, span: int = 0) -> Tensor:  # type: ignore[override]
        """``positions`` ``(B, T)`` long -> ``(B, T, C)``; ``span`` is unused (same call as the sinusoidal one)."""
        return super().forward(positions)

    def steps(self, first: int, length: int) -> Tensor:
        """``(1, length, C)`` embeddings of positions ``first .. first + length - 1``: a slice of the table."""
        if first + length > self.num_embeddings:
            raise IndexError(f"position {first + length - 1} is past this table's {self.num_embeddings} rows")
        return self.weight[first : first + length].unsqueeze(0)


def positional_embedding(
    max_positions: int, embedding_dim: int, padding_idx: int, *, learned: bool
) -> SinusoidalPositionalEmbedding | LearnedPositionalEmbedding:
    """fairseq's ``PositionalEmbedding`` factory: same table sizes, same initialisation."""
    if learned:
        return LearnedPositionalEmbedding(max_positions, embedding_dim, padding_idx)
    return SinusoidalPositionalEmbedding(embedding_dim, padding_idx, init_size=max_positions + padding_idx + 1)
