"""``--num-workers 0`` makes the next batch on a background thread: same batches, same order, errors raised
at the batch that failed, and the thread ends when the consumer stops early."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from seqloom.data.iterators import EpochBatchIterator, prefetched


def test_items_come_in_order_and_errors_surface_at_their_item() -> None:
    assert list(prefetched(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise ValueError("bad item 3")

    got = prefetched(failing())
    assert next(got) == 1 and next(got) == 2
    with pytest.raises(ValueError, match="bad item 3"):
        next(got)


def test_the_thread_stops_when_the_consumer_does() -> None:
    made = []

    def endless():
        i = 0
        while True:
            made.append(i)
            yield i
            i += 1

    before = threading.active_count()
    it = prefetched(endless())
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    deadline = time.time() + 5
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before
    assert len(made) <= 3 + 2  # one waiting in the queue, one being made


def test_epoch_batches_and_resume_are_those_of_a_worker_process() -> None:
    """The same batches as a DataLoader worker process gives, and a resumed epoch continues where the
    consumed (not the prefetched) batches end."""
    data = [np.full(3, i) for i in range(40)]
    batches = [np.arange(i, i + 4) for i in range(0, 40, 4)]

    def collate(items):
        return np.stack(items)

    def epoch(workers: int, offset_state=None):
        it = EpochBatchIterator(data, batches, collate, seed=3, num_workers=workers)
        if offset_state is not None:
            it.load_state_dict(offset_state)
        return it, it.next_epoch_itr(shuffle=True)

    _, threaded = epoch(0)
    _, processes = epoch(1)
    assert [b.tolist() for b in threaded] == [b.tolist() for b in processes]
    it, part = epoch(0)
    first = [next(part).tolist() for _ in range(4)]  # a fifth is being made meanwhile
    state = it.state_dict()
    assert state["iterations_in_epoch"] == 4
    _, rest = epoch(0, state)
    _, whole = epoch(0)
    assert first + [b.tolist() for b in rest] == [b.tolist() for b in whole]
