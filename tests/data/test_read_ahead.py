"""--data-buffer-size: a background thread reads batches ahead (fairseq's BufferedIterator), changing nothing else."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch

from seqloom.data.batching import batch_by_size
from seqloom.data.iterators import EpochBatchIterator
from seqloom.data.read_ahead import Prefetcher


class Rows:
    """Dataset of ``n`` one-token items; reading item ``bad`` fails like a corrupt file would."""

    def __init__(self, n: int, bad: int | None = None) -> None:
        self.n, self.bad = n, bad
        self.read: list[int] = []

    def __getitem__(self, i: int) -> int:
        if i == self.bad:
            raise ValueError(f"data.bin: item {i} is corrupt")
        self.read.append(i)
        return i

    def __len__(self) -> int:
        return self.n

    @staticmethod
    def collater(items: list[int]) -> dict[str, torch.Tensor]:
        return {"id": torch.tensor(items)}


def _iterator(dataset: Rows, **kw: object) -> EpochBatchIterator:
    batches = batch_by_size(np.arange(len(dataset)), np.ones(len(dataset), dtype=np.int64), max_sentences=2)
    return EpochBatchIterator(dataset, batches, dataset.collater, seed=5, **kw)  # type: ignore[arg-type]


def _ids(itr: object) -> list[list[int]]:
    return [b["id"].tolist() for b in itr]  # type: ignore[attr-defined]


def _wait_for(condition: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_read_ahead_gives_the_same_batches_and_resumes_at_the_consumed_one() -> None:
    plain, ahead = _iterator(Rows(30)), _iterator(Rows(30), buffer_size=10)
    for _ in range(2):  # two shuffled epochs
        assert _ids(ahead.next_epoch_itr()) == _ids(plain.next_epoch_itr())
    dataset = Rows(30)
    itr = _iterator(dataset, buffer_size=4)
    epoch = itr.next_epoch_itr()
    first = [next(epoch)["id"].tolist() for _ in range(2)]
    assert _wait_for(lambda: len(dataset.read) == 2 * (2 + 4 + 1))  # 2 taken, 4 queued, 1 waiting for room
    state = itr.state_dict()
    assert state["iterations_in_epoch"] == 2  # what the trainer took, not what was read ahead
    resumed = _iterator(Rows(30), buffer_size=4)
    resumed.load_state_dict(state)
    assert first + _ids(resumed.next_epoch_itr()) == _ids(_iterator(Rows(30)).next_epoch_itr())


def test_an_error_while_reading_ahead_is_raised_to_the_consumer() -> None:
    epoch = _iterator(Rows(10, bad=7), buffer_size=3).next_epoch_itr(shuffle=False)
    assert _ids(epoch.__next__() for _ in range(3)) == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError, match="data.bin: item 7 is corrupt"):
        next(epoch)


def test_closing_stops_the_thread_and_a_new_epoch_closes_the_last() -> None:
    before = {t for t in threading.enumerate() if t.name == "seqloom-data"}
    itr = _iterator(Rows(40), buffer_size=2)
    epoch = itr.next_epoch_itr()
    next(epoch)
    (thread,) = {t for t in threading.enumerate() if t.name == "seqloom-data"} - before
    itr.next_epoch_itr()  # the first epoch is left unfinished: its thread is stopped before the next begins
    assert not thread.is_alive()
    source = Prefetcher(iter(range(100)), 1)
    assert next(source) == 0
    source.close()
    assert source._thread is not None and not source._thread.is_alive()


def test_the_last_item_ends_every_later_call() -> None:
    source = Prefetcher(iter([1, 2]), 5)
    assert list(source) == [1, 2]
    with pytest.raises(StopIteration):
        next(source)


def test_worker_processes_read_ahead_on_their_own() -> None:
    """With --num-workers the DataLoader's processes already prepare batches ahead: no thread is added."""
    epoch = _iterator(Rows(8), buffer_size=10, num_workers=1).next_epoch_itr()
    assert not isinstance(epoch._loader, Prefetcher)
    assert sorted(i for b in _ids(epoch) for i in b) == list(range(8))


EXIT_WHILE_READING = """
import torch
from seqloom.data.read_ahead import Prefetcher

def batches():
    x = torch.randn(300, 300)
    while True:
        for _ in range(20):
            x = torch.tanh(x @ x)
        yield x

next(Prefetcher(batches(), 1000))  # the thread keeps reading (in a torch op) while the interpreter exits
"""


def test_exiting_while_a_thread_reads_ahead_exits_cleanly() -> None:
    """A daemon thread caught inside a torch op at interpreter shutdown aborts the process (status -6, as
    fairseq-train does after some runs); the reading threads are stopped and joined at exit instead."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", EXIT_WHILE_READING], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


EXIT_WHILE_DROPPING = """
import sys, time
from seqloom.data.read_ahead import Prefetcher

class Batch:
    def __init__(self, i):
        self.i = i

    def __del__(self):  # as freeing a batch's tensors: work the reading thread does after its loop
        time.sleep(0.2)
        print("freed", self.i, flush=True)

def batches():
    for i in range(4):
        yield Batch(i)

reader = Prefetcher(batches(), 2)
next(reader)
del reader  # stop without close(): the thread leaves its loop and drops its queue's batches itself
time.sleep(0.3)  # ... by now it is inside the first batch's __del__
sys.exit(0)
"""


def test_exit_waits_for_a_thread_still_freeing_its_batches() -> None:
    """The interpreter may not shut down while the reading thread frees what it had read ahead (in training:
    tensors, and a thread freeing a tensor at shutdown aborts the process, as 1 run in 4 of the BART benchmark
    did): exit waits until the thread has ended, so every batch left in the queue is freed."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", EXIT_WHILE_DROPPING], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    freed = sorted(line for line in done.stdout.splitlines() if line.startswith("freed"))
    assert freed == ["freed 0", "freed 1", "freed 2", "freed 3"], done.stdout  # 3: the one the thread held
