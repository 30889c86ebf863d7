"""Running one job per chunk of a file on ``--workers`` processes, with one progress bar.

A file is cut at line starts near equal byte offsets (``find_offsets``). Chunk 0 runs in the calling
process, chunks 1..N-1 in a pool of N-1 forked processes started once per run (as fairseq: N workers
are N processes). Workers report the bytes they have read through a shared counter, so the bar shows
the progress of all of them. Results come back in chunk order.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from multiprocessing.context import BaseContext
from multiprocessing.pool import AsyncResult, Pool
from multiprocessing.sharedctypes import Synchronized
from types import TracebackType
from typing import Protocol, TypeVar

from seqloom.data.line_reader import find_offsets

R = TypeVar("R")
# job(start, end, chunk_index, progress) -> result
ChunkJob = Callable[[int, int, int, Callable[[int], None]], R]

_counter: Synchronized[int] | None = None  # in pool processes: the shared byte counter


def _init_worker(counter: Synchronized[int]) -> None:
    global _counter
    _counter = counter


def _add_progress(nbytes: int) -> None:
    assert _counter is not None, "_init_worker sets it in each pool process"
    with _counter.get_lock():
        _counter.value += nbytes


def _run_chunk(job: ChunkJob[R], start: int, end: int, index: int) -> R:
    return job(start, end, index, _add_progress)


def _context() -> BaseContext:
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


class ChunkRunner:
    """Runs ``ChunkJob``s over the chunks of files; use as a context manager (it owns the pool)."""

    def __init__(self, workers: int, *, progress_bar: bool | None = None) -> None:
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self.progress_bar = progress_bar
        self._pool: Pool | None = None
        self._counter: Synchronized[int] | None = None

    def __enter__(self) -> ChunkRunner:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._pool is not None:
            if exc_type is None:
                self._pool.close()
            else:
                self._pool.terminate()  # stop workers before the caller removes their files
            self._pool.join()
            self._pool = None

    def _get_pool(self) -> tuple[Pool, Synchronized[int]]:
        """The pool and the byte counter its processes add to."""
        if self._pool is None or self._counter is None:
            ctx = _context()
            self._counter = ctx.Value("q", 0)
            self._pool = ctx.Pool(self.workers - 1, initializer=_init_worker, initargs=(self._counter,))
        return self._pool, self._counter

    def run(self, path: str, job: ChunkJob[R], *, desc: str) -> list[R]:
        """``job`` on each of the ``workers`` chunks of ``path``; the results in chunk order."""
        offsets = find_offsets(path, self.workers)
        chunks = list(zip(offsets, offsets[1:]))
        bar = _make_bar(offsets[-1], desc, self.progress_bar)
        pending: list[AsyncResult[R]] = []
        counter = None
        if len(chunks) > 1:
            pool, counter = self._get_pool()
            counter.value = 0
            pending = [pool.apply_async(_run_chunk, (job, a, b, k)) for k, (a, b) in enumerate(chunks[1:], start=1)]
        done = [0]

        def progress(nbytes: int) -> None:
            done[0] += nbytes
            if bar is not None:
                bar.n = done[0] + (counter.value if counter is not None else 0)
                bar.refresh()

        try:
            first = job(chunks[0][0], chunks[0][1], 0, progress)
            while not all(r.ready() for r in pending):
                time.sleep(0.05)
                progress(0)
            results = [first] + [r.get() for r in pending]
        finally:
            if bar is not None:
                bar.close()
        return results


class _Bar(Protocol):
    """The part of a tqdm bar that :meth:`ChunkRunner.run` uses."""

    n: float

    def refresh(self) -> object: ...

    def close(self) -> None: ...


def _make_bar(total: int, desc: str, enabled: bool | None) -> _Bar | None:
    """A tqdm bar on stderr (bytes), or None when disabled (``enabled=None``: only on a terminal)."""
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None
    import tqdm

    tqdm.tqdm.monitor_interval = 0  # no monitor thread: the pool forks
    return tqdm.tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=False)
