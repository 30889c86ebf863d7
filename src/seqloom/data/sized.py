"""The size queries of a dataset whose items have one length each and no target side.

The batch sampler and the length filter ask a dataset for ``src_sizes``/``tgt_sizes``, ``size(i)`` and
``num_tokens_vec(indices)``; for a one-sided dataset (masked LM, denoising, sentence prediction, a language
model's blocks) all of them follow from its ``sizes``. The protocols at the end say what the wrapping datasets
(:mod:`seqloom.data.resampling`) ask of the datasets they wrap, whose items and batches they pass on unread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np


class HasSizes(Protocol):
    @property
    def sizes(self) -> np.ndarray: ...


class OneSidedSizes:
    """A base for datasets with one int64 length an item in ``sizes`` (an attribute or a property of the
    subclass)."""

    @property
    def src_sizes(self: HasSizes) -> np.ndarray:
        return self.sizes

    @property
    def tgt_sizes(self) -> None:
        return None

    def num_tokens_vec(self: HasSizes, indices: np.ndarray) -> np.ndarray:
        """The tokens of each item in ``indices`` (its length)."""
        return self.sizes[indices]

    def size(self: HasSizes, index: int) -> int:
        return int(self.sizes[index])


ItemT = TypeVar("ItemT")
BatchT = TypeVar("BatchT")
BatchT_co = TypeVar("BatchT_co", covariant=True)


class Collating(Protocol[ItemT, BatchT_co]):
    """A dataset of ``ItemT`` items that its ``collater`` turns into ``BatchT`` batches."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> ItemT: ...

    def collater(self, samples: Sequence[ItemT]) -> BatchT_co: ...


class SizedCollating(Collating[ItemT, BatchT_co], Protocol):
    """A :class:`Collating` dataset with one length an item (``sizes``)."""

    @property
    def sizes(self) -> np.ndarray: ...


class PairCollating(Collating[ItemT, BatchT_co], Protocol):
    """A :class:`Collating` dataset of (source, target) items with both sides' lengths."""

    @property
    def src_sizes(self) -> np.ndarray: ...

    @property
    def tgt_sizes(self) -> np.ndarray | None: ...


class Batchable(Collating[ItemT, BatchT_co], Protocol):
    """A dataset that a task batches (:meth:`seqloom.tasks.base.Task.get_batch_iterator`): its batching order,
    lengths for the length filter and the token budget, and its collater."""

    @property
    def src_sizes(self) -> np.ndarray: ...

    @property
    def tgt_sizes(self) -> np.ndarray | None: ...

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray: ...

    def size(self, index: int) -> object: ...

    def ordered_indices(self, rng: np.random.RandomState | None = None) -> np.ndarray: ...
