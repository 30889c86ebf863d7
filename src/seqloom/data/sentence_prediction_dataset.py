"""Labelled sentences (or sentence pairs) for ``--task sentence_prediction`` (fairseq's dataset stack).

Each item's ``source`` is ``[init] input0 [sep] input1`` (the binarized sentences end in ``</s>``); its
``target`` a class index ``(1,)`` long or regression values ``(k,)`` float. Batches: sources right-padded,
``prev_output_tokens`` (``--add-prev-output-tokens``, encoder-decoder models such as BART) = each source
rolled right by one (its ``</s>`` first), targets stacked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqloom.data.bom import strip_bom_lines
from seqloom.data.language_pair_dataset import TokenDataset, collate_tokens
from seqloom.data.sized import OneSidedSizes


class PairTokens:
    """``[init] a [sep] b`` per item from two token datasets (``b`` optional); sizes as fairseq counts them."""

    def __init__(self, first: TokenDataset, second: TokenDataset | None, *, init_token: int | None,
                 separator_token: int | None) -> None:  # fmt: skip
        if second is not None and len(second) != len(first):
            raise ValueError(f"sentence_prediction: input0 has {len(first)} sentences but input1 {len(second)}")
        self.first, self.second = first, second
        self.init, self.sep = init_token, separator_token
        sizes = np.asarray(first.sizes, dtype=np.int64) + (init_token is not None)
        if second is not None:
            sizes = sizes + np.asarray(second.sizes, dtype=np.int64) + (separator_token is not None)
        self.sizes = sizes

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, index: int) -> Tensor:
        parts = [self.first[index].long()]
        if self.init is not None:
            parts.insert(0, parts[0].new_tensor([self.init]))
        if self.second is not None:
            if self.sep is not None:
                parts.append(parts[0].new_tensor([self.sep]))
            parts.append(self.second[index].long())
        return torch.cat(parts)


class SentencePredictionDataset(OneSidedSizes):
    """Sources and labels; batches in a seeded random order (``shuffle``) or in file order."""

    def __init__(self, sources: TokenDataset, labels: Sequence[Tensor], *, pad: int, add_prev_output_tokens: bool,
                 shuffle: bool, seed: int) -> None:  # fmt: skip
        if len(labels) != len(sources):
            raise ValueError(f"sentence_prediction: {len(sources)} inputs but {len(labels)} labels")
        self.sources, self.labels = sources, labels
        self.sizes = np.asarray(sources.sizes, dtype=np.int64)
        self.pad, self.add_prev_output_tokens = pad, add_prev_output_tokens
        rng = np.random.RandomState(seed)
        self.order = rng.permutation(len(sources)) if shuffle else np.arange(len(sources))

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"id": index, "source": self.sources[index], "target": self.labels[index]}

    def ordered_indices(self, rng: np.random.RandomState | None = None) -> np.ndarray:
        """fairseq's ``SortDataset(sort_order=[shuffle])``: the seeded permutation, not sorted by length."""
        return np.argsort(self.order, kind="mergesort").astype(np.int64)

    def collater(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            return {}
        sources = [s["source"] for s in samples]
        net_input: dict[str, Tensor] = {
            "src_tokens": collate_tokens(sources, self.pad),  # (B, S) right-padded
            "src_lengths": torch.tensor([t.numel() for t in sources], dtype=torch.long),
        }
        if self.add_prev_output_tokens:
            net_input["prev_output_tokens"] = collate_tokens([torch.roll(t, 1) for t in sources], self.pad)
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": sum(t.numel() for t in sources),
            "net_input": net_input,
            "target": torch.stack([s["target"] for s in samples]),  # (B, 1) long or (B, k) float
        }


def class_labels(labels: TokenDataset, *, eos: int, nspecial: int) -> list[Tensor]:
    """Binarized label lines (``label </s>``) -> class indices ``(1,)`` (label dictionary id - specials)."""
    out = []
    for i in range(len(labels)):
        ids = [int(t) for t in labels[i].tolist() if int(t) != eos]
        if len(ids) != 1:
            raise ValueError(f"sentence_prediction: label line {i + 1} holds {len(ids)} labels, expected one")
        out.append(torch.tensor([ids[0] - nspecial], dtype=torch.long))
    return out


def regression_labels(path: str) -> list[Tensor]:
    """``{split}.label``: one line of whitespace-separated floats per example (``--regression-target``)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(strip_bom_lines(f, path), start=1):
            try:
                out.append(torch.tensor([float(x) for x in line.split()], dtype=torch.float))
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: expected numbers (--regression-target), got {line.strip()!r}"
                ) from None
    return out
