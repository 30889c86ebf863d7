"""Datasets over several datasets, as fairseq's multilingual tasks combine one dataset per language.

* :class:`ResampledDataset`: a per-epoch random draw of a dataset's items (with or without replacement), so a
  language can be up- or down-sampled (fairseq's ``ResamplingDataset``: the same draws, from numpy's
  ``RandomState([42, seed, epoch])``).
* :class:`ConcatDataset`: the datasets one after another (indices run through the first, then the second ...).
* :class:`SortedDataset`: a dataset whose batching order is fixed when it is made, by size and then by a
  seeded permutation (fairseq's ``SortDataset`` with ``sort_order=[permutation, sizes]``).

Each keeps the interface the batching code reads: ``sizes``, ``num_tokens_vec``, ``size``, ``ordered_indices``,
``collater`` and ``set_epoch``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


class ResampledDataset:
    """``ceil(len(dataset) * size_ratio)`` items of ``dataset``, drawn anew at every epoch.

    With ``replace`` the draw is with replacement (up-sampling is possible); without it ``size_ratio`` must be
    below 1. Item ``i`` is the dataset's item ``indices[i]``; ``sizes`` follow the draw.
    """

    def __init__(self, dataset: Any, *, size_ratio: float, replace: bool, seed: int, epoch: int = 1) -> None:
        if size_ratio <= 0:
            raise ValueError(f"resampling: size_ratio must be positive (got {size_ratio})")
        if not replace and size_ratio >= 1:
            raise ValueError(f"resampling without replacement needs a size_ratio below 1 (got {size_ratio})")
        self.dataset, self.size_ratio, self.replace, self.seed = dataset, float(size_ratio), replace, seed
        self.length = int(math.ceil(len(dataset) * self.size_ratio))
        self.epoch: int | None = None
        self.indices = np.zeros(0, dtype=np.int64)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        set_inner = getattr(self.dataset, "set_epoch", None)
        if callable(set_inner):
            set_inner(epoch)
        if epoch == self.epoch:
            return
        self.epoch = epoch
        rng = np.random.RandomState([42, self.seed % 2**32, epoch])
        self.indices = rng.choice(len(self.dataset), self.length, replace=self.replace).astype(np.int64)

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return False  # each epoch draws other items: its batches are made anew

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(self.indices[index])]

    @property
    def sizes(self) -> np.ndarray:
        return np.asarray(self.dataset.sizes)[self.indices]

    def collater(self, samples: Sequence[Any]) -> Any:
        return self.dataset.collater(samples)


class ConcatDataset:
    """``datasets`` one after another; batches are collated by the first one's ``collater``."""

    def __init__(self, datasets: Sequence[Any]) -> None:
        if not datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        self.datasets = list(datasets)

    @property
    def offsets(self) -> np.ndarray:
        """Where each dataset starts, plus the total length at the end."""
        return np.cumsum([0] + [len(d) for d in self.datasets])

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            set_epoch = getattr(d, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return all(getattr(d, "can_reuse_epoch_itr_across_epochs", True) for d in self.datasets)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> Any:
        which = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.datasets[which][index - int(self.offsets[which])]

    @property
    def sizes(self) -> np.ndarray:
        return np.concatenate([np.asarray(d.sizes, dtype=np.int64) for d in self.datasets])

    def collater(self, samples: Sequence[Any]) -> Any:
        return self.datasets[0].collater(samples)


class SortedDataset:
    """``dataset`` batched in a fixed order: by size, equal sizes by a permutation seeded with ``seed``.

    The order is computed once, from the sizes at construction (fairseq's ``SortDataset``): a resampled
    dataset keeps its first epoch's order in later epochs, while its batches follow the current sizes.
    """

    def __init__(self, dataset: Any, *, seed: int) -> None:
        self.dataset = dataset
        permutation = np.random.RandomState(seed).permutation(len(dataset))
        self.order = np.lexsort([permutation, np.asarray(dataset.sizes)]).astype(np.int64)

    def set_epoch(self, epoch: int) -> None:
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return bool(getattr(self.dataset, "can_reuse_epoch_itr_across_epochs", True))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    @property
    def sizes(self) -> np.ndarray:
        return np.asarray(self.dataset.sizes, dtype=np.int64)

    @property
    def src_sizes(self) -> np.ndarray:
        return self.sizes

    @property
    def tgt_sizes(self) -> None:
        return None

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.sizes[indices]

    def size(self, index: int) -> int:
        return int(self.sizes[index])

    def ordered_indices(self, rng: np.random.RandomState | None = None) -> np.ndarray:
        return self.order

    def collater(self, samples: Sequence[Any]) -> Any:
        return self.dataset.collater(samples)
