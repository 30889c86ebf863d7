"""Batches decoded on threads or forked processes come back in input order (threads: each call with a worker
of its own); failures reach the caller."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from seqloom.cli.parallel_decoding import can_fork, in_order_on_processes, in_order_on_threads

needs_fork = pytest.mark.skipif(not can_fork(), reason="worker processes are forked (Linux)")


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


@needs_fork
def test_processes_return_results_in_order_from_the_state_at_fork() -> None:
    offset = torch.tensor([100])  # made before the fork: the workers see it

    def work(item: int) -> tuple[int, int, int]:
        time.sleep(0.002 * (item % 3))  # later items often finish first
        return int(offset) + item * item, os.getpid(), torch.get_num_threads()

    threads = torch.get_num_threads()
    out = list(in_order_on_processes(range(20), work, 2))
    assert [(item, result[0]) for item, result in out] == [(i, 100 + i * i) for i in range(20)]
    pids = {result[1] for _, result in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert {result[2] for _, result in out} == {max(1, threads // 2)}
    assert torch.get_num_threads() == threads


@needs_fork
def test_processes_hold_at_most_two_items_each_in_flight() -> None:
    started = []

    def items():
        for i in range(10):
            started.append(i)
            yield i

    for item, result in in_order_on_processes(items(), lambda item: -item, 2):
        assert result == -item and len(started) <= item + 1 + 4


@needs_fork
def test_a_failing_or_dying_worker_process_is_reported() -> None:
    def fails(item: int) -> int:
        if item == 3:
            raise ValueError("bad batch 3")
        return item

    got = []
    with pytest.raises(RuntimeError, match="(?s)decoding worker process.*failed.*ValueError: bad batch 3"):
        for _item, result in in_order_on_processes(range(6), fails, 2):
            got.append(result)
    assert got == [0, 1, 2]

    def dies(item: int) -> int:
        if item == 2:
            os._exit(3)
        return item

    with pytest.raises(RuntimeError, match="died \\(exit code 3\\)"):
        list(in_order_on_processes(range(6), dies, 2))


@needs_fork
def test_ctrl_c_while_an_item_is_handed_out_stops_the_workers_without_waiting(monkeypatch) -> None:
    """Ctrl-C can land just after a queue's ``put`` took the queue's lock and before it was released: the lock
    then stays taken. Stopping must neither wait for that queue nor leave the worker processes running."""
    import multiprocessing
    from multiprocessing import queues

    original = queues.SimpleQueue.put
    calls = []

    def put(self, obj) -> None:
        calls.append(obj)
        if len(calls) == 6:  # the 6th item handed out: the workers are busy with the first ones
            self._wlock.acquire()
            raise KeyboardInterrupt
        original(self, obj)

    monkeypatch.setattr(queues.SimpleQueue, "put", put)
    outcome = []

    def consume() -> None:
        try:
            for _ in in_order_on_processes(range(20), lambda item: item, 2):
                pass
        except KeyboardInterrupt:
            outcome.append("interrupted")

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and outcome == ["interrupted"]
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("seqloom-decode")]
