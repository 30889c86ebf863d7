"""Batches decoded on several CPU threads at once, results handed back in input order.

A decoding step of a small model is mostly per-op overhead (Python and dispatch), which one core spends
while the other waits for the next op; kernels release the GIL, so two batches on two threads of one
intra-op thread each keep both cores busy (CTranslate2's ``inter_threads``). Each thread has its own
generator (generators keep per-batch state), the models are shared read-only.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def in_order_on_threads(items: Iterable[T], work: Callable[[Any, T], R], workers: list[Any]) -> Iterator[tuple[T, R]]:
    """``(item, work(worker, item))`` for each of ``items``, in their order, computed on ``len(workers)``
    threads, each call borrowing one of ``workers`` (e.g. a generator) for itself.

    At most two items per thread are in flight, so memory stays bounded by the thread count. The
    intra-op thread count is divided among the threads meanwhile and restored afterwards.
    """
    idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for worker in workers:
        idle.put(worker)

    def run(item: T) -> R:
        worker = idle.get()
        try:
            return work(worker, item)
        finally:
            idle.put(worker)

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // len(workers)))
    try:
        with ThreadPoolExecutor(max_workers=len(workers), thread_name_prefix="seqloom-decode") as pool:
            pending: deque[tuple[T, Future[R]]] = deque()
            for item in items:
                pending.append((item, pool.submit(run, item)))
                if len(pending) >= 2 * len(workers):
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
    finally:
        torch.set_num_threads(threads)
