"""Evaluation with context (fairseq's ``LMContextWindowDataset``, ``eval-lm --context-window``).

Blocks are read in order; each row of a batch is prefixed with up to ``context_window`` tokens that came
before it in the stream (the tail of the previous rows), so its first tokens are scored with context. The
prefix is not scored: ``target`` is pad there and ``start_indices`` says where each row's block begins.
Rows stay ``tokens_per_sample + context_window`` tokens at most.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from seqloom.data.monolingual_dataset import MonolingualDataset


class LMContextWindowDataset:
    """Wraps a :class:`MonolingualDataset`; batches must be collated in dataset order (no shuffling)."""

    def __init__(self, dataset: MonolingualDataset, *, tokens_per_sample: int, context_window: int, pad_idx: int
                 ) -> None:  # fmt: skip
        if context_window <= 0:
            raise ValueError(f"--context-window must be positive here (got {context_window})")
        self.dataset = dataset
        self.tokens_per_sample = tokens_per_sample
        self.context_window = context_window
        self.pad_idx = pad_idx
        self.prev_tokens = np.empty(0, dtype=np.int64)  # the stream's last tokens seen so far

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[index]

    @property
    def sizes(self) -> np.ndarray:
        return self.dataset.sizes

    @property
    def src_sizes(self) -> np.ndarray:
        return self.dataset.sizes

    @property
    def tgt_sizes(self) -> None:
        return None

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.dataset.num_tokens_vec(indices)

    def size(self, index: int) -> int:
        return self.dataset.size(index)

    def ordered_indices(self, rng: np.random.RandomState | None = None) -> np.ndarray:
        return np.arange(len(self.dataset), dtype=np.int64)

    def collater(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        sample = self.dataset.collater(samples)
        if not sample:
            return sample
        net = sample["net_input"]
        tokens, target = net["src_tokens"].numpy(), sample["target"].numpy()  # (B, W), (B, W')
        bsz = tokens.shape[0]
        real = tokens != self.pad_idx  # (B, W)
        # the stream of real tokens: the carried tail, then each row's in order
        stream = np.concatenate([self.prev_tokens, tokens[real]])
        row_start = len(self.prev_tokens) + np.cumsum(real.sum(1)) - real.sum(1)  # (B,) stream offset
        context = self._context_lengths(row_start, real.sum(1))  # (B,)
        width = self.context_window
        new_tokens = np.full((bsz, tokens.shape[1] + width), self.pad_idx, dtype=np.int64)
        new_target = np.full((bsz, tokens.shape[1] + width), self.pad_idx, dtype=np.int64)
        cols = np.arange(width)
        has = cols < context[:, None]  # (B, window) columns holding context
        new_tokens[:, :width][has] = stream[(row_start - context)[:, None] + cols][has]
        rows = np.arange(bsz)[:, None]
        new_tokens[rows, context[:, None] + np.arange(tokens.shape[1])] = tokens
        new_target[rows, context[:, None] + np.arange(target.shape[1])] = target
        self.prev_tokens = stream[-width:]
        net["src_tokens"] = torch.from_numpy(new_tokens)
        net["src_lengths"] += torch.from_numpy(context)
        sample["target"] = torch.from_numpy(new_target)
        sample["start_indices"] = context.tolist()
        return sample

    def _context_lengths(self, row_start: np.ndarray, row_real: np.ndarray) -> np.ndarray:
        """How many earlier tokens prefix each row: up to ``context_window``, and fewer where the row is so
        long that prefix and row would pass ``tokens_per_sample + context_window``."""
        room = np.maximum(self.tokens_per_sample + self.context_window - row_real, 0)
        return np.minimum(np.minimum(row_start, self.context_window), room)
