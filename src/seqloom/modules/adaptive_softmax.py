"""Adaptive softmax (Grave et al., 2017): a head over frequent words plus one "cluster" entry per tail band.

``head`` scores the ``cutoff[0]`` most frequent words and one logit per tail band; band ``i``'s words are
scored by ``tail[i]`` (a projection to ``input_dim // factor**(i+1)``, dropout, then the band's output
layer) and their log-probability is the band's own log-softmax plus the head's log-probability of the band.
With adaptive input embeddings the output layers (and optionally the projections) are tied to the input
bands. Module names are fairseq's (``head``, ``tail.{i}.0``, ``tail.{i}.2``, ``version``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom.modules.adaptive_input import AdaptiveInput, band_edges


class TiedLinear(nn.Module):
    """A linear map (no bias) through a weight owned by another module, optionally transposed."""

    def __init__(self, weight: nn.Parameter, *, transpose: bool) -> None:
        super().__init__()
        self.weight = weight
        self.transpose = transpose

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.t() if self.transpose else self.weight)


class TiedHeadModule(nn.Module):
    """The head when tied to adaptive input: word scores through band 0's table, plus the cluster logits."""

    def __init__(self, tied_table: nn.Parameter, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.num_words, emb_dim = tied_table.shape
        word_proj: nn.Module = TiedLinear(tied_table, transpose=False)
        if input_dim != emb_dim:
            word_proj = nn.Sequential(nn.Linear(input_dim, emb_dim, bias=False), word_proj)
        self.word_proj = word_proj
        self.class_proj = nn.Linear(input_dim, num_classes, bias=False)
        self.register_buffer("_float_tensor", torch.FloatTensor(1))  # fairseq's key, kept for loading

    def forward(self, x: Tensor) -> Tensor:
        """``(N, input_dim)`` -> ``(N, num_words + num_classes)``."""
        return torch.cat([self.word_proj(x), self.class_proj(x)], dim=-1)


class AdaptiveSoftmax(nn.Module):
    """Log-probabilities over ``vocab_size`` words from ``(B, T, input_dim)`` features, cheaply."""

    def __init__(
        self,
        vocab_size: int,
        input_dim: int,
        cutoff: list[int],
        *,
        dropout: float,
        factor: float = 4.0,
        adaptive_inputs: AdaptiveInput | None = None,
        tie_proj: bool = False,
    ) -> None:
        super().__init__()
        self.cutoff = band_edges(vocab_size, cutoff)
        self.vocab_size = vocab_size
        self.input_dim = input_dim
        self.factor = factor
        self.dropout = dropout
        num_tails = len(self.cutoff) - 1
        if adaptive_inputs is not None:
            self.head: nn.Module = TiedHeadModule(adaptive_inputs.weights_for_band(0)[0], input_dim, num_tails)
        else:
            self.head = nn.Linear(input_dim, self.cutoff[0] + num_tails, bias=False)
        self.tail = nn.ModuleList(self._make_tail(i, adaptive_inputs, tie_proj) for i in range(num_tails))
        for m in self.modules():  # fairseq's init: Xavier for every owned weight
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
        self.register_buffer("version", torch.LongTensor([1]))

    def _make_tail(self, i: int, adaptive_inputs: AdaptiveInput | None, tie_proj: bool) -> nn.Sequential:
        dim = int(self.input_dim // self.factor ** (i + 1))
        size = self.cutoff[i + 1] - self.cutoff[i]
        if adaptive_inputs is None:
            proj: nn.Module = nn.Linear(self.input_dim, dim, bias=False)
            out: nn.Module = nn.Linear(dim, size, bias=False)
        else:
            table, band_proj = adaptive_inputs.weights_for_band(i + 1)  # (size, d), (input_dim, d)
            if tie_proj:
                proj = TiedLinear(band_proj, transpose=True)
            else:
                proj = nn.Linear(band_proj.size(0), band_proj.size(1), bias=False)
            out = TiedLinear(table, transpose=False)
        return nn.Sequential(proj, nn.Dropout(self.dropout), out)

    def head_size(self) -> int:
        return self.cutoff[0] + len(self.tail)

    def band_rows(self, target: Tensor) -> list[Tensor | None]:
        """For each tail band, the flat row ids whose ``target`` ``(B, T)`` falls in it (None when none does)."""
        flat = target.reshape(-1)
        rows: list[Tensor | None] = []
        for i in range(len(self.tail)):
            mask = (flat >= self.cutoff[i]) & (flat < self.cutoff[i + 1])
            rows.append(mask.nonzero().squeeze(1) if bool(mask.any()) else None)
        return rows

    def get_log_prob(self, features: Tensor, target: Tensor | None = None) -> Tensor:
        """Log-probabilities ``(B, T, V)`` (natural log) of ``features`` ``(B, T, input_dim)``.

        With ``target`` ``(B, T)`` only the tail band holding each row's target is computed (as fairseq
        does); the other tail entries of that row stay 0, so read only the target's column then.
        """
        bsz, length, dim = features.shape
        x = features.reshape(-1, dim)  # (N, C)
        head = self.head(x)
        out = head.new_zeros(x.size(0), self.vocab_size)  # (N, V)
        head_size = self.head_size()
        out[:, :head_size] = F.log_softmax(head, dim=-1)
        priors = out[:, self.cutoff[0] : head_size].clone()  # (N, n_tails) log P(band)
        rows = self.band_rows(target) if target is not None else [None] * len(self.tail)
        for i, tail in enumerate(self.tail):
            start, end = self.cutoff[i], self.cutoff[i + 1]
            if target is None:
                out[:, start:end] = F.log_softmax(tail(x), dim=-1) + priors[:, i, None]
            elif rows[i] is not None:
                idx = rows[i]
                out[idx, start:end] = F.log_softmax(tail(x[idx]), dim=-1) + priors[idx, i, None]
        return out.view(bsz, length, -1)

    def forward(self, features: Tensor, target: Tensor) -> tuple[list[Tensor | None], list[Tensor | None]]:
        """Training outputs: per band, the scores of the rows that need it and their targets within the band.

        ``features`` ``(B, T, C)``, ``target`` ``(B, T)``. Element 0 is the head ``(N, head_size)`` with
        targets where tail words are replaced by their band's cluster id; element ``i + 1`` is tail ``i``'s
        ``(N_i, band_size)`` scores and ``(N_i,)`` targets, or None when no target falls in the band.
        """
        x = F.dropout(features.reshape(-1, features.size(-1)), p=self.dropout, training=self.training)  # (N, C)
        flat = target.reshape(-1)
        head_target = flat.clone()
        outputs: list[Tensor | None] = [self.head(x)]
        targets: list[Tensor | None] = [head_target]
        for i, (tail, idx) in enumerate(zip(self.tail, self.band_rows(target))):
            start, end = self.cutoff[i], self.cutoff[i + 1]
            head_target[(flat >= start) & (flat < end)] = self.cutoff[0] + i
            if idx is None:
                outputs.append(None)
                targets.append(None)
            else:
                outputs.append(tail(x.index_select(0, idx)))
                targets.append(flat.index_select(0, idx) - start)
        return outputs, targets
