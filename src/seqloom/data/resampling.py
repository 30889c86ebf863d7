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

import hashlib
import math
from collections.abc import Sequence
from typing import Generic

import numpy as np

from seqloom.data.sized import BatchT, ItemT, OneSidedSizes, PairCollating, SizedCollating


class ResampledDataset(Generic[ItemT, BatchT]):
    """``ceil(len(dataset) * size_ratio)`` items of ``dataset``, drawn anew at every epoch.

    With ``replace`` the draw is with replacement (up-sampling is possible); without it ``size_ratio`` must be
    below 1. Item ``i`` is the dataset's item ``indices[i]``; ``sizes`` follow the draw.
    """

    def __init__(
        self, dataset: SizedCollating[ItemT, BatchT], *, size_ratio: float, replace: bool, seed: int, epoch: int = 1
    ) -> None:
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

    def __getitem__(self, index: int) -> ItemT:
        return self.dataset[int(self.indices[index])]

    @property
    def sizes(self) -> np.ndarray:
        return np.asarray(self.dataset.sizes)[self.indices]

    def collater(self, samples: Sequence[ItemT]) -> BatchT:
        return self.dataset.collater(samples)


class ConcatDataset(Generic[ItemT, BatchT]):
    """``datasets`` one after another; batches are collated by the first one's ``collater``."""

    def __init__(self, datasets: Sequence[SizedCollating[ItemT, BatchT]]) -> None:
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

    def __getitem__(self, index: int) -> ItemT:
        which = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.datasets[which][index - int(self.offsets[which])]

    @property
    def sizes(self) -> np.ndarray:
        return np.concatenate([np.asarray(d.sizes, dtype=np.int64) for d in self.datasets])

    def collater(self, samples: Sequence[ItemT]) -> BatchT:
        return self.datasets[0].collater(samples)


class SortedDataset(OneSidedSizes, Generic[ItemT, BatchT]):
    """``dataset`` batched in a fixed order: by size, equal sizes by a permutation seeded with ``seed``.

    The order is computed once, from the sizes at construction (fairseq's ``SortDataset``): a resampled
    dataset keeps its first epoch's order in later epochs, while its batches follow the current sizes.
    """

    def __init__(self, dataset: SizedCollating[ItemT, BatchT], *, seed: int) -> None:
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

    def __getitem__(self, index: int) -> ItemT:
        return self.dataset[index]

    @property
    def sizes(self) -> np.ndarray:
        return np.asarray(self.dataset.sizes, dtype=np.int64)

    def ordered_indices(self, rng: np.random.RandomState | None = None) -> np.ndarray:
        return self.order

    def collater(self, samples: Sequence[ItemT]) -> BatchT:
        return self.dataset.collater(samples)


def virtual_size(lengths: Sequence[int], ratios: np.ndarray, max_scale_up: float = 1.5) -> int:
    """fairseq's default size of a sampled mixture: every dataset scaled as the largest one is (by its ratio
    relative to the largest's), capped at ``max_scale_up`` times the real total."""
    largest = int(np.argmax(lengths))
    scaled = sum(r / ratios[largest] * lengths[largest] for r in ratios)
    cap = sum(lengths) * max_scale_up
    return int(scaled if scaled < cap else cap)


# fairseq seeds the draws of its mixtures with the SHA-1 of the class name (and the seed and epoch)
def _class_key(name: str) -> int:
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % 2**32


def _pair_sizes(dataset: PairCollating[ItemT, BatchT], indices: np.ndarray) -> np.ndarray:
    """(source, target) sizes ``(len(indices), 2)`` of ``dataset``'s items ``indices``."""
    if dataset.tgt_sizes is None:
        raise ValueError("MultiPairDataset: every dataset must have targets (one of them has no tgt_sizes)")
    return np.stack([dataset.src_sizes[indices], dataset.tgt_sizes[indices]], axis=1)


class MultiPairDataset(Generic[ItemT, BatchT]):
    """Language-pair datasets mixed as fairseq's ``SampledMultiDataset`` (``--sampling-method``) mixes them.

    Without ``ratios`` it is their concatenation. With ``ratios`` (one per dataset) every epoch draws
    ``virtual_size`` items: dataset ``i`` gets ``virtual_size * r_i / sum(r)`` of them (rounded down; the
    remainder drawn by those shares), each a random item of it (with replacement only when it has fewer). The
    draws come from ``RandomState([key, seed, epoch])``, as fairseq's. Items are ``(sizes)`` pairs; batches
    are collated by the first dataset's collater. ``order_seed`` seeds the permutation that breaks ties of the
    batching order (with ``shuffle``; fairseq's batch sampler uses the run's ``--seed``).
    """

    rng_key = _class_key("SampledMultiDataset")

    def __init__(self, datasets: Sequence[PairCollating[ItemT, BatchT]], ratios: Sequence[float] | None, *, seed: int = 2, epoch: int = 1,
                 shuffle: bool = True, order_seed: int = 1, size: int | None = None) -> None:  # fmt: skip
        """``size``: the mixture's length per draw (fairseq's ``--virtual-data-size``; default its rule)."""
        self.datasets = list(datasets)
        self.ratios = None if ratios is None else np.asarray(ratios, dtype=np.float64)
        lengths = [len(d) for d in self.datasets]
        if self.ratios is None:
            self.length = sum(lengths)
        else:
            self.length = size if size is not None else virtual_size(lengths, self.ratios)
        self.seed, self.shuffle, self.order_seed = seed, shuffle, order_seed
        self.epoch: int | None = None
        self.indices = np.zeros(0, dtype=np.int64)
        self.offsets = np.zeros(0, dtype=np.int64)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        if epoch == self.epoch:
            return
        for d in self.datasets:
            set_epoch = getattr(d, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)
        self.epoch = epoch
        if self.ratios is None and len(self.indices):
            return
        lengths = [len(d) for d in self.datasets]
        if self.ratios is None:
            parts = [np.arange(n, dtype=np.int64) for n in lengths]
        else:
            rng = np.random.RandomState([self.rng_key, self.seed % 2**32, epoch])
            shares = self.ratios / self.ratios.sum()
            counts = np.array([self.length * r for r in shares], dtype=np.int64)
            for i in rng.choice(len(shares), size=self.length - int(counts.sum()), p=shares):
                counts[i] += 1
            parts = [rng.choice(n, c, replace=c > n) for n, c in zip(lengths, counts)]
        self.indices = np.concatenate(parts).astype(np.int64)
        self.offsets = np.cumsum([len(p) for p in parts])
        self._sizes = np.vstack([_pair_sizes(d, p) for d, p in zip(self.datasets, parts)])

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return False

    def __len__(self) -> int:
        return self.length

    def _item(self, index: int) -> ItemT:
        """Item ``index`` of the whole mixture."""
        which = int(np.searchsorted(self.offsets, index, side="right"))
        return self.datasets[which][int(self.indices[index])]

    def __getitem__(self, index: int) -> ItemT:
        return self._item(index)

    @property
    def pair_sizes(self) -> np.ndarray:
        """(source, target) sizes ``(len, 2)`` of the items."""
        return self._sizes

    @property
    def src_sizes(self) -> np.ndarray:
        return self.pair_sizes[:, 0]

    @property
    def tgt_sizes(self) -> np.ndarray:
        return self.pair_sizes[:, 1]

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.pair_sizes[indices].max(axis=1)

    def size(self, index: int) -> tuple[int, int]:
        sizes = self.pair_sizes[index]
        return int(sizes[0]), int(sizes[1])

    def ordered_indices(self, rng: np.random.RandomState | None = None) -> np.ndarray:
        """By source length, ties by target length, ties beyond that by a permutation seeded with ``order_seed``
        (with ``shuffle``), as fairseq's batch sampler orders the mixture."""
        order = np.random.RandomState(self.order_seed).permutation(len(self)) if self.shuffle else np.arange(len(self))
        order = order[np.argsort(self.tgt_sizes[order], kind="mergesort")]
        return order[np.argsort(self.src_sizes[order], kind="mergesort")].astype(np.int64)

    def collater(self, samples: Sequence[ItemT]) -> BatchT:
        return self.datasets[0].collater(samples)


class VirtualEpochMultiPairDataset(MultiPairDataset[ItemT, BatchT]):
    """A :class:`MultiPairDataset` served ``virtual_epoch_size`` items per epoch (fairseq's
    ``SampledMultiEpochDataset``, ``--virtual-epoch-size``).

    A pass over the whole mixture spans ``ceil(len / virtual_epoch_size)`` epochs; at the start of each pass the
    mixture is drawn again and put in a random order (both seeded with ``[key, seed, epoch]``), and each epoch
    takes the next window of that order.
    """

    rng_key = _class_key("SampledMultiEpochDataset")

    def __init__(self, datasets: Sequence[PairCollating[ItemT, BatchT]], ratios: Sequence[float] | None, *, virtual_epoch_size: int,
                 seed: int = 2, epoch: int = 1, shuffle: bool = True, order_seed: int = 1,
                 size: int | None = None) -> None:  # fmt: skip
        if virtual_epoch_size <= 0:
            raise ValueError(f"--virtual-epoch-size must be positive (got {virtual_epoch_size})")
        self.virtual_epoch_size = virtual_epoch_size
        self.num_virtual_epochs = 1
        self.window_start: int | None = None
        self.order: np.ndarray | None = None
        super().__init__(datasets, ratios, seed=seed, epoch=epoch, shuffle=shuffle, order_seed=order_seed, size=size)

    def set_epoch(self, epoch: int) -> None:
        if self.window_start is None:
            self.virtual_epoch_size = min(self.virtual_epoch_size, self.length)
            self.num_virtual_epochs = math.ceil(self.length / self.virtual_epoch_size)
        elif epoch == self.epoch:
            return
        start = ((epoch - 1) % self.num_virtual_epochs) * self.virtual_epoch_size
        if start == 0 or self.order is None:  # a new pass: a new mixture, in a new order
            super().set_epoch(epoch)
            rng = np.random.RandomState([self.rng_key, self.seed % 2**32, epoch])
            self.order = rng.choice(self.length, self.length, replace=False).astype(np.int64)
        else:
            self.epoch = epoch
        self.window_start = start

    @property
    def window(self) -> np.ndarray:
        """The mixture's items this epoch serves, in order."""
        assert self.order is not None and self.window_start is not None
        return self.order[self.window_start : self.window_start + len(self)]

    def __len__(self) -> int:
        assert self.window_start is not None
        return min(self.virtual_epoch_size, self.length - self.window_start)

    def __getitem__(self, index: int) -> ItemT:
        return self._item(int(self.window[index]))

    @property
    def pair_sizes(self) -> np.ndarray:
        return self._sizes[self.window]
