"""Keeping freed CPU memory in the process heap, so that the next step's tensors reuse it.

PyTorch's CPU tensors come from glibc's ``malloc``. glibc hands blocks over ``M_MMAP_THRESHOLD`` to the
kernel directly and gives the top of the heap back once more than ``M_TRIM_THRESHOLD`` of it is free. A
decoding step allocates and frees a few tensors of about a megabyte (the log-probs of a batch) and so does
a training step, much larger; with glibc's defaults that memory goes back to the kernel at every step and
comes back as fresh pages, each one a page fault. In ``seqloom generate`` on the bundled model this made
the step's element-wise operations several times slower than on warm memory.

:func:`keep_freed_memory` raises both thresholds (``mallopt``, glibc's own switch for this), so that
freed blocks up to ``mmap_threshold`` are reused. The commands call it once when they run on the CPU. It
leaves the heap alone where the user already tuned it (``MALLOC_*_`` variables or ``GLIBC_TUNABLES``),
outside glibc, and when ``SEQLOOM_KEEP_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers (<malloc.h>)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its dynamic threshold
TRIM_THRESHOLD = 64 << 20
_done = False


def user_tuned_heap() -> bool:
    """Whether the environment already sets glibc's malloc thresholds."""
    if any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ):
        return True
    return "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")


def keep_freed_memory(*, mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Lets freed blocks up to ``mmap_threshold`` bytes stay in the heap (and up to ``trim_threshold`` bytes
    of free heap stay mapped). Returns whether the settings changed; once per process."""
    global _done
    if _done or not sys.platform.startswith("linux") or os.environ.get("SEQLOOM_KEEP_FREED_MEMORY") == "0":
        return False
    _done = True
    if user_tuned_heap():
        return False
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: glibc is loaded already
    except (ValueError, OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    changed = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    if changed:
        logger.debug("malloc keeps freed blocks up to %d bytes in the heap", mmap_threshold)
    return changed
