"""Epoch iteration over fixed batches: seeded shuffling, sharding across ranks, and mid-epoch resume.

The batches (lists of sample ids) are fixed once. Each epoch ``e`` shuffles their order with
``np.random.RandomState(seed + e)`` (fairseq's recipe, so the data order matches fairseq's), gives rank
``r`` of ``n`` every n-th batch (padded with empty batches so all ranks take the same number of steps),
and counts how many it has handed out. ``state_dict()`` is fairseq's ``extra_state["train_iterator"]``:
``{"version": 2, "epoch", "iterations_in_epoch", "shuffle"}``; loading it resumes at that batch.

With ``buffer_size`` (``--data-buffer-size``, default 10 as fairseq's) and no worker processes, a background
thread prepares the next batches (reading, noising, collating) while the model trains on the current one, as
fairseq's ``BufferedIterator`` does. Batches come out in the same order either way, and no data code draws
from torch's global random generator, so the dropout masks of the training steps do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, Protocol, TypedDict, TypeVar

import numpy as np
import torch.utils.data

from seqloom.data.read_ahead import Prefetcher
from seqloom.data.sized import BatchT, ItemT

ItemT_co = TypeVar("ItemT_co", covariant=True)


class Indexed(Protocol[ItemT_co]):
    """A dataset's items by index (what the batches are made of)."""

    def __getitem__(self, index: int) -> ItemT_co: ...


class IteratorState(TypedDict):
    """fairseq's ``extra_state["train_iterator"]``."""

    version: int
    epoch: int
    iterations_in_epoch: int
    shuffle: bool


class _Batches(torch.utils.data.Dataset[BatchT], Generic[ItemT, BatchT]):
    """Batch ``i`` of an epoch, collated: what a DataLoader's workers compute."""

    def __init__(
        self, dataset: Indexed[ItemT], batches: Sequence[np.ndarray], collate_fn: Callable[[list[ItemT]], BatchT]
    ) -> None:
        self.dataset, self.batches, self.collate_fn = dataset, batches, collate_fn

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> BatchT:
        return self.collate_fn([self.dataset[int(j)] for j in self.batches[i]])


class EpochIterator(Generic[BatchT]):
    """Iterates one epoch's batches from ``offset``; ``n`` counts the batches handed out so far."""

    def __init__(self, loader: Iterator[BatchT] | None, total: int, offset: int) -> None:
        self._loader = loader
        self.total = total
        self.n = offset

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> EpochIterator[BatchT]:
        return self

    def __next__(self) -> BatchT:
        if self._loader is None or self.n >= self.total:
            raise StopIteration
        batch = next(self._loader)
        self.n += 1
        return batch

    def has_next(self) -> bool:
        return self.n < self.total

    def close(self) -> None:
        """Stops reading ahead (an epoch left before its end)."""
        if isinstance(self._loader, Prefetcher):
            self._loader.close()

    def take_groups(self, size: int, *, whole_only: bool = False) -> Iterator[list[BatchT]]:
        """Yields lists of ``size`` consecutive batches (the last may be shorter, or left out with
        ``whole_only``): one update each."""
        if whole_only and self.total - self.n < size:
            self.n = self.total  # too few batches left for one update: the epoch is over
        while self.has_next():
            group: list[BatchT] = []
            while len(group) < size and self.has_next():
                group.append(next(self))
            if whole_only and self.total - self.n < size:
                self.n = self.total  # what is left would make a partial group: the epoch ends with this one
            yield group


class EpochBatchIterator(Generic[ItemT, BatchT]):
    """Fixed batches over ``dataset``, re-shuffled per epoch, resumable mid-epoch."""

    def __init__(
        self,
        dataset: Indexed[ItemT],
        batches: Sequence[np.ndarray],
        collate_fn: Callable[[list[ItemT]], BatchT],
        *,
        seed: int = 1,
        num_shards: int = 1,
        shard_id: int = 0,
        num_workers: int = 0,
        epoch: int = 1,
        grouped_shuffling: bool = False,
        skip_remainder_batch: bool = False,
        buffer_size: int = 0,
    ) -> None:
        """``grouped_shuffling`` (``--grouped-shuffling``): each epoch shuffles groups of ``num_shards``
        consecutive (length-sorted) batches, so that the ranks get batches of similar lengths at each step;
        as in fairseq, the batches after the last whole group are left out of shuffled epochs.
        ``skip_remainder_batch`` (``--skip-remainder-batch``): each epoch leaves out this shard's last batch,
        whatever its size, as fairseq's iterator does. ``buffer_size`` (``--data-buffer-size``): batches a
        background thread reads ahead when there are no worker processes (at most 20, as in fairseq)."""
        if num_shards < 1:
            raise ValueError(f"--num-shards must be at least 1 (got {num_shards})")
        if not 0 <= shard_id < num_shards:  # fairseq's ShardedIterator refuses it too
            raise ValueError(f"--shard-id {shard_id} with --num-shards {num_shards}: shard ids run from 0 to "
                             f"{num_shards - 1}")  # fmt: skip
        self.dataset = dataset
        self.grouped_shuffling = grouped_shuffling
        self.skip_remainder_batch = skip_remainder_batch
        self.frozen_batches = list(batches)
        self.collate_fn = collate_fn
        self.seed, self.num_shards, self.shard_id = seed, num_shards, shard_id
        self.num_workers = num_workers
        self.buffer_size = min(max(buffer_size, 0), 20)
        self.epoch = max(epoch, 1)  # the epoch the next ``next_epoch_itr`` starts (or resumes)
        self.shuffle = True
        self._offset = 0  # where that epoch resumes
        self._current: EpochIterator | None = None
        self.empty_reason: str | None = None  # why there are no batches, when there are none (set by the task)

    def __len__(self) -> int:
        """Batches per epoch for this shard."""
        return max(0, -(-len(self.frozen_batches) // self.num_shards) - int(self.skip_remainder_batch))

    @property
    def next_epoch_idx(self) -> int:
        if self._current is not None and not self._current.has_next():
            return self.epoch + 1
        return self.epoch

    def epoch_batches(self, epoch: int, shuffle: bool) -> list[np.ndarray]:
        """This shard's batches in epoch ``epoch``'s order."""
        batches = list(self.frozen_batches)
        if shuffle and self.grouped_shuffling:
            n = self.num_shards
            groups = [batches[i * n : (i + 1) * n] for i in range(len(batches) // n)]
            np.random.RandomState(self.seed + epoch).shuffle(groups)
            batches = [b for group in groups for b in group]
        elif shuffle:
            np.random.RandomState(self.seed + epoch).shuffle(batches)
        mine = batches[self.shard_id :: self.num_shards]
        empty = np.zeros(0, dtype=np.int64)
        mine += [empty] * (-(-len(batches) // self.num_shards) - len(mine))
        return mine[:-1] if self.skip_remainder_batch else mine

    def next_epoch_itr(self, shuffle: bool = True, *, set_dataset_epoch: bool = True) -> EpochIterator:
        """Starts the next epoch (or the one being resumed) and returns its iterator.

        ``set_dataset_epoch=False`` leaves the dataset at the epoch it has: validation passes it (as fairseq does),
        so that a validation split whose items depend on the epoch (masked_lm's masks, denoising noise) is the
        same set at every validation, and its losses can be compared from one validation to the next."""
        if self._current is not None:
            self.epoch = self.next_epoch_idx
            self._offset = 0
            self._current.close()
        self.shuffle = shuffle
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_dataset_epoch and callable(set_epoch):  # as fairseq: datasets whose items change per epoch learn it
            set_epoch(self.epoch)
        batches = self.epoch_batches(self.epoch, shuffle)
        self._current = self._make_iterator(batches, self._offset)
        return self._current

    def _make_iterator(self, batches: list[np.ndarray], offset: int) -> EpochIterator:
        if offset >= len(batches):
            return EpochIterator(None, len(batches), len(batches))
        data = _Batches(self.dataset, batches, self.collate_fn)
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=None,
            sampler=range(offset, len(batches)),
            num_workers=self.num_workers,
            persistent_workers=False,
        )
        batches_iter: Iterator[BatchT] = iter(loader)  # made here: a DataLoader draws its base seed on creation
        if self.buffer_size > 0 and self.num_workers == 0:  # worker processes read ahead of their own
            batches_iter = Prefetcher(batches_iter, self.buffer_size)
        return EpochIterator(batches_iter, len(batches), offset)

    def end_of_epoch(self) -> bool:
        return self._current is None or not self._current.has_next()

    @property
    def iterations_in_epoch(self) -> int:
        return self._current.n if self._current is not None else self._offset

    def state_dict(self) -> IteratorState:
        """fairseq's iterator state; an epoch that has ended is recorded as complete (n == len)."""
        return {
            "version": 2,
            "epoch": self.epoch,
            "iterations_in_epoch": self.iterations_in_epoch,
            "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # a checkpoint's: unpickled values
        """Resumes where ``state`` left off: mid-epoch at that batch, or at the next epoch if it ended."""
        self.epoch = int(state["epoch"])
        offset = int(state.get("iterations_in_epoch", 0))
        self.shuffle = bool(state.get("shuffle", True))
        if self._current is not None:
            self._current.close()
        self._current = None
        if offset >= len(self) and offset > 0:
            self.epoch += 1
            offset = 0
        self._offset = offset
