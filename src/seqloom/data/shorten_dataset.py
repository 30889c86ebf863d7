"""``--shorten-method``: truncate or randomly crop sentences longer than ``--tokens-per-sample``."""

from __future__ import annotations

from typing import Literal

import numpy as np
from torch import Tensor

from seqloom.data.language_pair_dataset import TokenDataset

ShortenMethod = Literal["none", "truncate", "random_crop"]


class TruncateDataset:
    """The first ``length`` tokens of each sentence."""

    def __init__(self, dataset: TokenDataset, length: int) -> None:
        self.dataset = dataset
        self.length = length
        self.sizes = np.minimum(np.asarray(dataset.sizes, dtype=np.int64), length)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        return self.dataset[index][: self.length]


class RandomCropDataset(TruncateDataset):
    """A random window of ``length`` tokens of each longer sentence, fixed per (seed, epoch, index).

    The window start is drawn as fairseq draws it (``numpy_seed(seed, epoch, index)``); fairseq never
    passes the epoch down through the LM datasets, so it stays 0 and each sentence keeps one crop.
    """

    def __init__(self, dataset: TokenDataset, length: int, *, seed: int = 1, epoch: int = 0) -> None:
        super().__init__(dataset, length)
        self.seed, self.epoch = seed, epoch

    def __getitem__(self, index: int) -> Tensor:
        item = self.dataset[index]
        excess = item.size(0) - self.length
        if excess <= 0:
            return item
        rng = np.random.RandomState(int(hash((self.seed, self.epoch, index)) % 1e6))
        start = int(rng.randint(0, excess))
        return item[start : start + self.length]


def maybe_shorten(dataset: TokenDataset, split: str, *, split_list: str, method: str, length: int, seed: int
                  ) -> TokenDataset:  # fmt: skip
    """Applies ``--shorten-method`` to ``split`` if ``--shorten-data-split-list`` names it (empty: every split)."""
    applies = split in split_list.split(",") or len(split_list) == 0
    if method == "truncate" and applies:
        return TruncateDataset(dataset, length)
    if method == "random_crop" and applies:
        return RandomCropDataset(dataset, length, seed=seed)
    return dataset
