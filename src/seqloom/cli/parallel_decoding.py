"""Batches decoded several at once on the CPU, results handed back in input order.

A decoding step of a small model is mostly per-op overhead (Python and dispatch), which one core spends
while the other waits for the next op. Two ways to keep all cores busy (CTranslate2's ``inter_threads``):

* :func:`in_order_on_processes`: worker processes forked from this one (they share its models' memory),
  one intra-op thread each. Nothing is shared at run time, so N workers run N times as many steps; on the
  2-core machine, two processes decoded the benchmark's test set in 0.77x the time of two threads.
* :func:`in_order_on_threads`: threads, each with its own generator (generators keep per-batch state) and
  the models shared read-only. Kernels release the GIL but the Python between them does not, so the
  threads wait for each other; they serve where ``fork`` does not exist (Windows, macOS's default).
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import signal
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import torch

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.queues import Queue, SimpleQueue

T = TypeVar("T")
R = TypeVar("R")
W = TypeVar("W")
# a worker process's answer: (item index, the pickled result or None if it failed, the failure's traceback or "")
Outcome = tuple[int, bytes | None, str]


def in_order_on_threads(items: Iterable[T], work: Callable[[W, T], R], workers: list[W]) -> Iterator[tuple[T, R]]:
    """``(item, work(worker, item))`` for each of ``items``, in their order, computed on ``len(workers)``
    threads, each call borrowing one of ``workers`` (e.g. a generator) for itself.

    At most two items per thread are in flight, so memory stays bounded by the thread count. The
    intra-op thread count is divided among the threads meanwhile and restored afterwards.
    """
    idle: queue.SimpleQueue[W] = queue.SimpleQueue()
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


def can_fork() -> bool:
    """Whether :func:`in_order_on_processes` may run here: ``fork`` exists and is safe (Linux)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _serve(
    work: Callable[[T], R], tasks: SimpleQueue[tuple[int, bytes] | None], results: Queue[Outcome], threads: int
) -> None:
    """A worker process: decodes the pickled items it is given until it gets None. Ctrl-C is the parent's to
    handle (it stops the workers), so a worker ignores it rather than printing a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    while True:
        task = tasks.get()
        if task is None:
            return
        index, payload = task
        try:
            results.put((index, pickle.dumps(work(pickle.loads(payload)), protocol=pickle.HIGHEST_PROTOCOL), ""))
        except BaseException:  # noqa: BLE001 - handed to the parent, which raises it
            results.put((index, None, traceback.format_exc()))


def _next_result(results: Queue[Outcome], workers: list[BaseProcess]) -> Outcome:
    """The next result, checking every second that the workers are alive (a killed one would never answer)."""
    while True:
        try:
            return results.get(timeout=1.0)
        except queue.Empty:
            dead = [w for w in workers if not w.is_alive()]
            if dead:
                raise RuntimeError(
                    f"decoding worker process {dead[0].name} died (exit code {dead[0].exitcode})"
                ) from None


def in_order_on_processes(items: Iterable[T], work: Callable[[T], R], count: int) -> Iterator[tuple[T, R]]:
    """``(item, work(item))`` for each of ``items``, in their order, computed in ``count`` forked processes.

    ``work`` runs in the children with the state this process had when they were forked (its models,
    generator, ...). Items and results travel pickled (tensors by value, each result in one message); at
    most two items per process are in flight. A failure in a worker is raised here with its traceback, in
    its item's turn (the results of the items before it are handed back first).
    """
    context = multiprocessing.get_context("fork")
    tasks, results = context.SimpleQueue(), context.Queue()
    threads = max(1, torch.get_num_threads() // count)
    workers: list[BaseProcess] = [context.Process(target=_serve, args=(work, tasks, results, threads), daemon=True,
                               name=f"seqloom-decode-{i}") for i in range(count)]  # fmt: skip
    for worker in workers:
        worker.start()
    pending: dict[int, T] = {}
    outcomes: dict[int, tuple[bytes | None, str]] = {}  # index -> (pickled result or None, traceback)
    source = iter(items)
    sent = returned = 0

    def feed() -> None:
        nonlocal sent
        for item in source:
            pending[sent] = item
            tasks.put((sent, pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)))
            sent += 1
            return

    finished = False
    try:
        for _ in range(2 * count):
            feed()
        while returned < sent:
            index, payload, failure = _next_result(results, workers)
            outcomes[index] = (payload, failure)
            while returned in outcomes:  # in input order: the items before a failed one are handed back first
                payload, failure = outcomes.pop(returned)
                if payload is None:
                    raise RuntimeError(f"a decoding worker process failed:\n{failure}")
                yield pending.pop(returned), pickle.loads(payload)
                returned += 1
                feed()
        finished = True
    finally:
        _stop(workers, tasks if finished else None)


def _stop(workers: list[BaseProcess], tasks: SimpleQueue[tuple[int, bytes] | None] | None) -> None:
    """Ends the worker processes: told to stop through ``tasks`` when every item was answered, else (an error,
    Ctrl-C, a caller that stopped early) terminated. An interruption may have left a queue's lock taken (Ctrl-C
    between a ``put`` taking it and releasing it), so the second case touches no queue."""
    if tasks is not None:
        for _ in workers:
            tasks.put(None)
        for worker in workers:
            worker.join(timeout=5)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
            worker.join(timeout=5)
