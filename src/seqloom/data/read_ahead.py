"""Reading ahead: a daemon thread that prepares the next items of an iterator while the consumer works.

fairseq's ``BufferedIterator`` (``--data-buffer-size``) for the epoch iterators of
:mod:`seqloom.data.iterators`. The thread is stopped and joined at exit: a daemon thread still inside a torch
op when the interpreter shuts down aborts the process.
"""

from __future__ import annotations

import atexit
import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar, Union, cast


class _Failed:
    """An exception raised while preparing a batch in the background, handed to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()  # the source is exhausted

T = TypeVar("T")
# what the queue holds: an item, a failure, or _END
_Slot = Union[T, _Failed, object]
_RUNNING: dict[threading.Thread, threading.Event] = {}  # the reading threads alive, and their stop events
_RUNNING_LOCK = threading.Lock()


def _stop_running() -> None:
    """At exit: stops the reading threads and waits for them (each finishes the batch in hand). A daemon thread
    still inside a torch op when the interpreter shuts down aborts the process ("terminate called without an
    active exception", exit status -6: what fairseq-train's reading thread does after some runs). That
    includes freeing tensors: a thread whose reading is over still drops the batches left in its queue as
    ``threading`` clears its arguments, so a thread counts until it has ended, not until its loop returns."""
    with _RUNNING_LOCK:
        running = list(_RUNNING.items())
    for _, stop in running:
        stop.set()
    for thread, _ in running:
        thread.join(timeout=60)


atexit.register(_stop_running)


def _fill(source: Iterator[T], buffer: queue.Queue[_Slot[T]], stop: threading.Event) -> None:
    """The background thread: puts every item of ``source`` (then ``_END``, or the failure) into ``buffer``."""
    _read(source, buffer, stop)


def _read(source: Iterator[T], buffer: queue.Queue[_Slot[T]], stop: threading.Event) -> None:

    def put(item: _Slot[T]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for item in source:
            if not put(item):
                return
    except BaseException as error:  # noqa: BLE001 (handed to the consumer, which raises it)
        put(_Failed(error))
        return
    put(_END)


class Prefetcher(Generic[T]):
    """The items of ``source``, read ahead by a daemon thread into a queue of ``size`` (fairseq's
    ``BufferedIterator``). The thread starts at the first ``next``; :meth:`close` (or garbage collection) stops
    it. An exception raised while reading is raised again by ``next``."""

    def __init__(self, source: Iterator[T], size: int) -> None:
        self._source = source
        self._buffer: queue.Queue[_Slot[T]] = queue.Queue(size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._thread is None:
            self._thread = threading.Thread(target=_fill, args=(self._source, self._buffer, self._stop),
                                            name="seqloom-data", daemon=True)  # fmt: skip
            with _RUNNING_LOCK:
                for ended in [thread for thread in _RUNNING if not thread.is_alive()]:
                    del _RUNNING[ended]
                _RUNNING[self._thread] = self._stop
            self._thread.start()
        item = self._buffer.get()
        if item is _END:
            self._buffer.put(_END)  # later calls stop too
            raise StopIteration
        if isinstance(item, _Failed):
            raise item.error
        return cast(T, item)  # neither _END nor a failure: one of the source's items

    def close(self) -> None:
        """Stops the thread and waits for it (it finishes the item in hand, then sees the stop within a tenth
        of a second), dropping what it had read ahead: the source's data may change after this (a new epoch)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)

    def __del__(self) -> None:
        self._stop.set()
