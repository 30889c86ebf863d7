"""Language-model samples (fairseq's ``MonolingualDataset``) and their collation.

Each item wraps one block of a :class:`~seqloom.data.token_block_dataset.TokenBlockDataset` built with
``include_targets``: ``source`` is the block shifted right (the model's input), ``target`` the block (the
next token at every position). A batch is fairseq's LM sample, batch-first and right-padded::

    {"id": (B,), "nsentences": B, "ntokens": source tokens,
     "net_input": {"src_tokens": (B, T), "src_lengths": (B,)}, "target": (B, T)}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import collate_tokens
from seqloom.data.sized import OneSidedSizes


def collate(samples: Sequence[dict[str, Any]], *, pad_idx: int, eos_idx: int, pad_to_length: int | None = None
            ) -> dict[str, Any]:  # fmt: skip
    """fairseq's LM batch from ``{"id", "source", "target"}`` items (empty dict if none); rows keep their order."""
    if not samples:
        return {}

    def merge(key: str) -> Tensor:
        out = collate_tokens([s[key] for s in samples], pad_idx, eos_idx=eos_idx, left_pad=False)  # (B, T)
        if pad_to_length is not None and out.size(1) < pad_to_length:
            out = torch.nn.functional.pad(out, (0, pad_to_length - out.size(1)), value=pad_idx)
        return out

    src_tokens = merge("source")
    target = merge("target") if samples[0].get("target") is not None else src_tokens
    return {
        "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
        "nsentences": len(samples),
        "ntokens": sum(len(s["source"]) for s in samples),
        "net_input": {
            "src_tokens": src_tokens,
            "src_lengths": torch.tensor([s["source"].numel() for s in samples], dtype=torch.long),
        },
        "target": target,
    }


class MonolingualDataset(OneSidedSizes):
    """LM samples over ``blocks``; sizes, ordering and collation as fairseq's dataset of that name.

    ``add_eos_for_other_targets`` is accepted for fairseq's signature; it only matters for the ``self`` and
    ``past`` targets, which ``transformer_lm`` does not support. ``output_vocab`` smaller than ``vocab``
    (``--output-dictionary-size``) maps out-of-range targets to its unk.
    """

    def __init__(
        self,
        blocks: Any,
        sizes: np.ndarray,
        vocab: Dictionary,
        output_vocab: Dictionary | None = None,
        *,
        shuffle: bool = True,
        add_bos_token: bool = False,
        fixed_pad_length: int | None = None,
        has_targets: bool = True,
    ) -> None:
        self.blocks = blocks
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.vocab = vocab
        self.output_vocab = output_vocab if output_vocab is not None else vocab
        self.shuffle = shuffle
        self.add_bos_token = add_bos_token
        self.fixed_pad_length = fixed_pad_length
        self.has_targets = has_targets

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.has_targets:
            source, target, _ = self.blocks[index]
            target = self._filter_vocab(target)
        else:
            source, target = self.blocks[index], None
        if self.add_bos_token:
            source = torch.cat([source.new_tensor([self.vocab.bos()]), source])
            if target is not None:
                target = torch.cat([target.new_tensor([self.output_vocab.bos()]), target])
        return {"id": index, "source": source, "target": target}

    def _filter_vocab(self, target: Tensor) -> Tensor:
        if len(self.output_vocab) == len(self.vocab):
            return target
        target = target.clone()
        target[target >= len(self.output_vocab)] = self.output_vocab.unk()
        return target

    def collater(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate(samples, pad_idx=self.vocab.pad(), eos_idx=self.vocab.eos(), pad_to_length=self.fixed_pad_length)

    def ordered_indices(self, rng: np.random.RandomState | None = None) -> np.ndarray:
        """Ids sorted by size; equal sizes in a seeded random order (fairseq's ``lexsort`` of both)."""
        order = (rng or np.random).permutation(len(self)) if self.shuffle else np.arange(len(self))
        return np.lexsort([order, self.sizes]).astype(np.int64)
