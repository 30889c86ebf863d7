"""Batches decoded on threads come back in input order, each call with a worker of its own."""

from __future__ import annotations

import threading
import time

import torch

from seqloom.generation.parallel import in_order_on_threads


def test_results_come_back_in_order_and_workers_are_never_shared() -> None:
    busy: set[int] = set()
    lock = threading.Lock()
    seen_threads = []

    def work(worker: int, item: int) -> int:
        with lock:
            assert worker not in busy, "one worker lent to two calls at once"
            busy.add(worker)
            seen_threads.append(torch.get_num_threads())
        time.sleep(0.002 * (item % 3))  # later items often finish first
        with lock:
            busy.discard(worker)
        return item * item

    threads = torch.get_num_threads()
    out = list(in_order_on_threads(range(20), work, workers=[0, 1]))
    assert out == [(i, i * i) for i in range(20)]
    assert set(seen_threads) == {max(1, threads // 2)}  # each decoding thread gets its share of intra-op threads
    assert torch.get_num_threads() == threads  # restored


def test_at_most_two_items_per_thread_are_in_flight() -> None:
    started = []

    def items():
        for i in range(10):
            started.append(i)
            yield i

    consumed = 0
    for item, _ in in_order_on_threads(items(), lambda worker, item: item, workers=["a", "b"]):
        assert len(started) <= item + 1 + 4  # never more than 2 x 2 ahead of what was handed back
        consumed += 1
    assert consumed == 10


def test_an_error_in_a_call_reaches_the_caller() -> None:
    def work(worker: str, item: int) -> int:
        if item == 3:
            raise ValueError("bad batch 3")
        return item

    got = []
    try:
        for _item, result in in_order_on_threads(range(6), work, workers=["a", "b"]):
            got.append(result)
    except ValueError as err:
        assert "bad batch 3" in str(err)
    else:
        raise AssertionError("the error was swallowed")
    assert got == [0, 1, 2]
