"""Prompts for a language model to continue (``interactive --task language_modeling``, the LM hub's ``sample``).

As fairseq's ``language_modeling`` task builds them for inference: each encoded line loses its ``</s>``, the
model reads the start symbol (``</s>``, or ``<s>`` with ``--add-bos-token``) and the prompt, and generation is
forced through the prompt (``prefix_tokens``, right-padded: a shorter prompt's pad positions are free) and
continues from there. Batches keep the input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import collate_tokens


def strip_eos(ids: Tensor, eos: int) -> Tensor:
    """``ids`` without leading and trailing ``eos`` (fairseq's ``StripTokenDataset``)."""
    start, end = 0, ids.numel()
    while end > start and int(ids[end - 1]) == eos:
        end -= 1
    while start < end and int(ids[start]) == eos:
        start += 1
    return ids[start:end]


def prompt_sources(prompts: Sequence[Tensor], *, start: int, pad: int, eos: int) -> Tensor:
    """``(B, 1 + T)`` right-padded model inputs: the start symbol, then the prompt."""
    rows = [torch.cat([p.new_tensor([start]), p]) for p in prompts]
    return collate_tokens(rows, pad, eos_idx=eos, left_pad=False)


class PromptDataset:
    """Encoded lines as prompts; its batches carry ``prefix_tokens`` and ``bos_token`` for the generator."""

    def __init__(self, tokens: Sequence[Tensor], dictionary: Dictionary, *, start: int) -> None:
        self.prompts = [strip_eos(t, dictionary.eos()) for t in tokens]
        self.dictionary, self.start = dictionary, start
        self.src_sizes = np.array([len(t) for t in tokens], dtype=np.int64)  # fairseq's sizes: the encoded lines
        self.tgt_sizes = None

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"id": index, "source": self.prompts[index]}

    def size(self, index: int) -> tuple[int, int]:
        return int(self.src_sizes[index]), 0

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.src_sizes[indices]

    def ordered_indices(self, rng: np.random.RandomState | None = None) -> np.ndarray:
        return np.arange(len(self), dtype=np.int64)

    def collater(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            return {}
        d = self.dictionary
        src = prompt_sources([s["source"] for s in samples], start=self.start, pad=d.pad(), eos=d.eos())
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": int(src.ne(d.pad()).sum()),
            "net_input": {"src_tokens": src, "src_lengths": src.ne(d.pad()).long().sum(dim=1)},
            "target": None,
            "prefix_tokens": src[:, 1:],
            "bos_token": self.start,
        }
