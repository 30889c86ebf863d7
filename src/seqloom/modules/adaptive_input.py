"""Adaptive input embeddings (Baevski & Auli, 2019): frequent words get wide vectors, rare words narrow ones.

The vocabulary is cut into bands at ``cutoff`` (ids below ``cutoff[0]`` are band 0, ...). Band ``i`` embeds
its words in ``initial_dim // factor**i`` dimensions and projects them to ``output_dim``. Parameter names
(``embeddings.{i}.0.weight`` for the band's table, ``embeddings.{i}.1.weight`` for its projection, and the
``_float_tensor`` buffer) are fairseq's, so its checkpoints load key for key.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn


def band_edges(vocab_size: int, cutoff: list[int]) -> list[int]:
    """The upper edge of every band: ``cutoff`` plus ``vocab_size`` when the last cutoff is below it."""
    if not cutoff:
        raise ValueError("adaptive input/softmax: the cutoff list is empty (e.g. --adaptive-input-cutoff 20000,60000)")
    if any(b <= a for a, b in zip(cutoff, cutoff[1:])):
        raise ValueError(f"adaptive input/softmax: cutoffs must increase, got {cutoff}")
    if cutoff[-1] > vocab_size:
        raise ValueError(
            f"adaptive input/softmax: cutoff {cutoff[-1]} is larger than the vocabulary ({vocab_size} types); "
            "lower the last value of --adaptive-input-cutoff / --adaptive-softmax-cutoff"
        )
    return list(cutoff) if cutoff[-1] == vocab_size else [*cutoff, vocab_size]


class AdaptiveInput(nn.Module):
    """Token ids ``(B, T)`` -> ``(B, T, output_dim)`` embeddings from per-band tables and projections."""

    def __init__(
        self, vocab_size: int, padding_idx: int, initial_dim: int, factor: float, output_dim: int, cutoff: list[int]
    ) -> None:
        super().__init__()
        self.cutoff = band_edges(vocab_size, cutoff)
        self.embedding_dim = output_dim
        self.padding_idx = padding_idx
        self.embeddings = nn.ModuleList()
        for i, end in enumerate(self.cutoff):
            start = self.cutoff[i - 1] if i > 0 else 0
            dim = int(initial_dim // (factor**i))
            table = nn.Embedding(end - start, dim, padding_idx if i == 0 else None)
            self.embeddings.append(nn.Sequential(table, nn.Linear(dim, output_dim, bias=False)))
        self._init_weights()
        # fairseq keeps this (meaningless) buffer in its state dicts; kept for key-for-key loading
        self.register_buffer("_float_tensor", torch.FloatTensor(1))

    def _init_weights(self) -> None:
        """fairseq's init: N(0, dim^-0.5) tables whose row ``padding_idx`` is zero (in every band), Xavier projections."""
        for i in range(len(self.embeddings)):
            table, proj = self._band(i)
            nn.init.normal_(table.weight, mean=0, std=table.weight.shape[1] ** -0.5)
            if self.padding_idx < table.weight.shape[0]:
                nn.init.constant_(table.weight[self.padding_idx], 0)
            nn.init.xavier_uniform_(proj.weight)

    def _band(self, band: int) -> tuple[nn.Embedding, nn.Linear]:
        """The band's ``nn.Sequential(table, projection)`` as its two typed layers."""
        layers = cast(nn.Sequential, self.embeddings[band])
        return cast(nn.Embedding, layers[0]), cast(nn.Linear, layers[1])

    def weights_for_band(self, band: int) -> tuple[nn.Parameter, nn.Parameter]:
        """The band's embedding table ``(n_band, dim)`` and projection ``(output_dim, dim)`` (for weight tying)."""
        table, proj = self._band(band)
        return cast(nn.Parameter, table.weight), cast(nn.Parameter, proj.weight)

    def forward(self, tokens: Tensor) -> Tensor:
        """``tokens`` ``(B, T)`` long -> ``(B, T, output_dim)``."""
        out = self._band(0)[1].weight.new_empty((*tokens.shape, self.embedding_dim))  # (B, T, C)
        for i, end in enumerate(self.cutoff):
            start = self.cutoff[i - 1] if i > 0 else 0
            mask = (tokens >= start) & (tokens < end)  # (B, T)
            if bool(mask.any()):
                out[mask] = self.embeddings[i](tokens[mask] - start).to(out.dtype)
        return out
