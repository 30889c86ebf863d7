"""Multiple-choice examples for ``--task sentence_ranking`` (RACE, SWAG, CommonsenseQA layouts).

Each example has a context (``input0``) and ``N`` options (``input1`` .. ``inputN``); option ``i`` is read as
``[init] option_i [sep] context`` (each binarized sentence ends in ``</s>``): ``--max-option-length`` cuts
``[init] option_i`` first, ``--shorten-method`` then cuts the whole sequence. The target is the index of the
right option. Batches keep fairseq's layout: ``net_input1`` .. ``net_inputN`` (each ``src_tokens`` ``(B, S_i)``
right-padded and ``src_lengths`` ``(B,)``), ``target`` ``(B,)``; ``ntokens`` counts the first option's tokens,
as fairseq does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from seqloom.data.bom import strip_bom_lines
from seqloom.data.language_pair_dataset import TokenDataset, collate_tokens
from seqloom.data.sentence_prediction_dataset import PairTokens, SentencePredictionDataset
from seqloom.data.shorten_dataset import TruncateDataset


def option_tokens(option: TokenDataset, context: TokenDataset, *, init_token: int | None, separator_token: int | None,
                  max_option_length: int | None) -> TokenDataset:  # fmt: skip
    """``[init] option [sep] context`` per example, ``[init] option`` cut to ``max_option_length`` tokens."""
    head: Any = PairTokens(option, None, init_token=init_token, separator_token=None)
    if max_option_length is not None:
        head = TruncateDataset(head, max_option_length)
    return PairTokens(head, context, init_token=None, separator_token=separator_token)


class OptionsTokens:
    """The ``N`` option sequences of each example; an item is a list of ``N`` token tensors, its size the
    longest of them (what batching and ``--max-positions`` filtering count, as fairseq's)."""

    def __init__(self, options: Sequence[TokenDataset]) -> None:
        self.options = list(options)
        self.sizes = np.maximum.reduce([np.asarray(o.sizes, dtype=np.int64) for o in self.options])

    def __len__(self) -> int:
        return len(self.options[0])

    def __getitem__(self, index: int) -> list[Tensor]:
        return [o[index] for o in self.options]


class SentenceRankingDataset(SentencePredictionDataset):
    """Options and (optional) labels in a seeded random order (``shuffle``) or in file order."""

    def __init__(self, options: OptionsTokens, labels: Sequence[int] | None, *, pad: int, shuffle: bool,
                 seed: int) -> None:  # fmt: skip
        targets = [torch.tensor(-1 if labels is None else labels[i]) for i in range(len(options))]
        # the base class only stores, sizes and orders the items; this class's collater reads them as lists
        super().__init__(
            cast(TokenDataset, options), targets, pad=pad, add_prev_output_tokens=False, shuffle=shuffle, seed=seed
        )
        self.has_labels = labels is not None
        self.num_options = len(options.options)

    def collater(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            return {}
        batch: dict[str, Any] = {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": sum(s["source"][0].numel() for s in samples),
        }
        for k in range(self.num_options):
            tokens = [s["source"][k] for s in samples]
            batch[f"net_input{k + 1}"] = {
                "src_tokens": collate_tokens(tokens, self.pad),  # (B, S_k) right-padded
                "src_lengths": torch.tensor([t.numel() for t in tokens], dtype=torch.long),
            }
        if self.has_labels:
            batch["target"] = torch.stack([s["target"] for s in samples]).long()  # (B,)
        return batch


def read_choice_labels(path: str, *, num_classes: int) -> list[int]:
    """``label/{split}.label``: one integer per line, the index (0 .. num_classes-1) of the right option."""
    labels = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(strip_bom_lines(f, path), start=1):
            text = line.strip()
            if not text.lstrip("-").isdigit() or not 0 <= int(text) < num_classes:
                raise ValueError(f"{path}:{lineno}: expected the index of the right option, 0 to {num_classes - 1} "
                                 f"(--num-classes {num_classes}), got {text!r}")  # fmt: skip
            labels.append(int(text))
    return labels
