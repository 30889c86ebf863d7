"""BART's training samples: token blocks ``<s> ... </s>`` and their noised copies (fairseq's ``DenoisingDataset``).

Item ``i`` of epoch ``e`` is ``{"id", "source": noised block, "target": block}``, the noise drawn from a
generator seeded with ``(seed, e, i)`` (:mod:`seqloom.data.noising`). Batches are fairseq's: rows sorted by
decreasing source length, right-padded, ``prev_output_tokens`` = target with ``</s>`` moved to the front.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqloom.data.dictionary import Dictionary
from seqloom.data.language_pair_dataset import TokenDataset, collate_tokens
from seqloom.data.noising import NoiseOptions, Vocab, add_noise, seeded
from seqloom.data.sized import OneSidedSizes


class StripTokenDataset:
    """Each sentence without the token ``strip`` at either end (fairseq's ``StripTokenDataset``).

    ``sizes`` stay the wrapped dataset's, as in fairseq: the denoising task cuts blocks by the sizes *with*
    ``</s>`` from the stripped stream, so a block is its sentences joined without ``</s>``, a little shorter
    than its recorded size (which batching uses). Keeping this reproduces fairseq's blocks exactly.
    """

    def __init__(self, dataset: TokenDataset, strip: int) -> None:
        self.dataset, self.strip = dataset, strip
        self.sizes = np.asarray(dataset.sizes, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        item = self.dataset[index]
        start, end = 0, item.numel()
        while end > start and int(item[end - 1]) == self.strip:
            end -= 1
        while start < end and int(item[start]) == self.strip:
            start += 1
        return item[start:end]


class BosEosDataset:
    """Each item with ``bos`` prepended and ``eos`` appended; ``sizes`` grow by 2."""

    # ``dataset``: a TokenDataset, or a TokenBlockDataset made without targets, whose items are then tensors
    # though its type says they may be tuples
    def __init__(self, dataset: Any, bos: int, eos: int) -> None:
        self.dataset, self.bos, self.eos = dataset, bos, eos
        self.sizes = np.asarray(dataset.sizes, dtype=np.int64) + 2

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        item = self.dataset[index].long()
        return torch.cat([item.new_tensor([self.bos]), item, item.new_tensor([self.eos])])


class DenoisingDataset(OneSidedSizes):
    """Noised ``<s> ... </s>`` blocks; ``set_epoch`` changes the noise (the trainer's iterator calls it)."""

    def __init__(self, blocks: TokenDataset, vocab: Dictionary, opts: NoiseOptions, *, mask_idx: int, full_stop: int,
                 word_start_table: np.ndarray | None = None, seed: int = 1, shuffle: bool = False,
                 eos: int | None = None) -> None:  # fmt: skip
        """``eos``: the token that ends every block (default ``</s>``; mBART: the block's ``[lang]``)."""
        opts.check()
        self.blocks = blocks
        self.sizes = np.asarray(blocks.sizes, dtype=np.int64)
        self.vocab, self.opts = vocab, opts
        self.ids = Vocab(size=len(vocab), mask=mask_idx, full_stop=full_stop)
        self.word_start_table = word_start_table
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0
        self.eos = vocab.eos() if eos is None else eos

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        target = self.blocks[index]
        if int(target[0]) != self.vocab.bos() or int(target[-1]) != self.eos:
            raise ValueError(f"denoising: block {index} does not read <s> ... {self.vocab[self.eos]}")
        generator = seeded(self.seed, self.epoch, index)
        table = self.word_start_table
        source = add_noise(target.numpy(), self.opts, self.ids, word_start_table=table, generator=generator)
        return {"id": index, "source": torch.from_numpy(source), "target": target}

    def ordered_indices(self, rng: np.random.RandomState | None = None) -> np.ndarray:
        """Ids by size (stable); with ``shuffle`` (``--shuffle-instance``) equal sizes in a seeded random order."""
        order = (rng or np.random).permutation(len(self)) if self.shuffle else np.arange(len(self))
        return order[np.argsort(self.sizes[order], kind="mergesort")].astype(np.int64)

    def collater(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate(samples, pad_idx=self.vocab.pad(), eos_idx=self.vocab.eos())


def collate(samples: Sequence[dict[str, Any]], *, pad_idx: int, eos_idx: int) -> dict[str, Any]:
    """fairseq's denoising batch: rows by decreasing source length, right-padded (empty dict if none)."""
    if not samples:
        return {}
    lengths = torch.tensor([s["source"].numel() for s in samples], dtype=torch.long)
    lengths, order = lengths.sort(descending=True)
    rows = [samples[i] for i in order.tolist()]
    target = collate_tokens([s["target"] for s in rows], pad_idx, eos_idx=eos_idx)  # (B, T)
    return {
        "id": torch.tensor([s["id"] for s in rows], dtype=torch.long),
        "ntokens": sum(s["target"].numel() for s in rows),
        "nsentences": len(rows),
        "net_input": {
            "src_tokens": collate_tokens([s["source"] for s in rows], pad_idx, eos_idx=eos_idx),  # (B, S)
            "src_lengths": lengths,
            "prev_output_tokens": collate_tokens(  # each row's own last token first ([lang] in mBART), as fairseq
                [s["target"] for s in rows], pad_idx, eos_idx=None, move_eos_to_beginning=True
            ),  # fmt: skip
        },
        "target": target,
    }
