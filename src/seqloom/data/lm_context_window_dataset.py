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
        pad, window = self.pad_idx, self.context_window
        toks, tgt = sample["net_input"]["src_tokens"], sample["target"]  # (B, T)
        lengths = sample["net_input"]["src_lengths"]
        bsz, width = toks.shape
        new_toks = np.empty((bsz, width + window), dtype=np.int64)
        new_tgt = np.full((bsz, width + window), pad, dtype=np.int64)
        real = toks.ne(pad).long().sum(dim=1).tolist()
        starts = [0] * bsz
        for i in range(bsz):
            extra = len(self.prev_tokens) + real[i] - (self.tokens_per_sample + window)
            if extra > 0:
                self.prev_tokens = self.prev_tokens[extra:]
            n = len(self.prev_tokens)
            new_toks[i] = np.concatenate([self.prev_tokens, toks[i].numpy(), np.full(window - n, pad)])
            new_tgt[i, n : n + tgt.size(1)] = tgt[i].numpy()
            starts[i] = n
            lengths[i] += n
            row = new_toks[i]
            self.prev_tokens = row[row != pad][-window:]
        sample["net_input"]["src_tokens"] = torch.from_numpy(new_toks)
        sample["target"] = torch.from_numpy(new_tgt)
        sample["start_indices"] = starts
        return sample
