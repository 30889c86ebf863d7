"""One trainer per ``--save-dir``: an exclusive OS lock held for the whole run, and the clean-up it makes safe.

The lock is ``fcntl.flock`` on ``.seqloom-train.lock`` in the folder. The OS drops it when the process ends,
however it ends (exit, exception, SIGKILL, power cut), so a lock left by a dead run never blocks a new one;
the file itself stays and only says who held it last. A second trainer on the folder is refused with the
first one's pid and host (written into the file once the lock is held).

Holding the lock, a trainer also knows that no other seqloom trainer is saving there, so the temp files of
interrupted saves (the names seqloom's atomic writes make, nothing else) can be removed.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from types import TracebackType

from seqloom.checkpoint.io import CheckpointError

try:
    import fcntl
except ImportError:  # Windows: no flock; the folder goes unguarded
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_NAME = ".seqloom-train.lock"

# The temp names seqloom's atomic writes give checkpoint files: ``.NAME.XXXXXXXX.tmp`` (``save_checkpoint``
# and the copies to the other names, through ``tempfile.mkstemp``), ``NAME.tmpPID`` (the copies of earlier
# releases) and ``.write-test-PID`` (the probe of ``verify_save_dir``).
STALE_TEMP_NAMES = re.compile(r"\.checkpoint[^/]*\.pt\.[a-z0-9_]{8}\.tmp|checkpoint[^/]*\.pt\.tmp\d+|\.write-test-\d+")


class SaveDirInUseError(CheckpointError):
    """Another process holds the lock of the save folder."""


class SaveDirLock:
    """The exclusive lock of one save folder (a context manager; :meth:`release` is idempotent)."""

    def __init__(self, save_dir: str) -> None:
        self.save_dir = save_dir
        self.path = os.path.join(save_dir, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock, or raises :class:`SaveDirInUseError` naming the process that holds it."""
        if fcntl is None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise SaveDirInUseError(
                f"--save-dir {self.save_dir} is in use by another training run ({holder}); two runs saving into "
                "one folder overwrite each other's checkpoints: wait for that run to end, stop it, or choose "
                "another --save-dir"
            ) from None
        except OSError as err:  # a file system without locks (some network mounts): train unguarded
            os.close(fd)
            logger.warning("--save-dir %s: cannot lock %s (%s); nothing keeps a second run from saving there too",
                           self.save_dir, self.path, err.strerror or err)  # fmt: skip
            return
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}, since {when}\n".encode())
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drops the lock (closing the file is enough; the file stays, naming the last holder)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> SaveDirLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 400, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "a process that has not yet written its pid"


def remove_stale_temp_files(save_dir: str) -> list[str]:
    """Removes the temp files interrupted saves left in ``save_dir`` (only names seqloom's atomic writes make;
    call it only while holding the folder's lock); logs what went and returns the names."""
    removed, size = [], 0
    for entry in sorted(os.scandir(save_dir), key=lambda e: e.name):
        if not (entry.is_file(follow_symlinks=False) and STALE_TEMP_NAMES.fullmatch(entry.name)):
            continue
        try:
            size += entry.stat(follow_symlinks=False).st_size
            os.remove(entry.path)
        except OSError as err:
            logger.warning("could not remove the stale temp file %s (%s)", entry.path, err.strerror or err)
            continue
        removed.append(entry.name)
    if removed:
        shown = ", ".join(removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5 else "")
        logger.info("removed %d temp file(s) (%.1f MB) that interrupted saves left in %s: %s",
                    len(removed), size / 1e6, save_dir, shown)  # fmt: skip
    return removed
