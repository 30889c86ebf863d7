"""Why a path could not be written: the words of error messages that name a user's file or folder."""

from __future__ import annotations

import os
from pathlib import Path


def unwritable_reason(path: str | os.PathLike[str], err: OSError) -> str:
    """The reason ``path`` (a file or folder to create) could not be written: a file standing where one of
    its folders should be (the OS says only "Not a directory" or "File exists"), else the OS's words."""
    blocker = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
    if blocker is None and Path(path).exists() and not Path(path).is_dir() and isinstance(err, FileExistsError):
        blocker = Path(path)
    return f"{blocker} is a file, not a folder" if blocker is not None else (err.strerror or str(err))


def current_umask() -> int:
    """The process's umask, read without changing it where the OS tells it (Linux's /proc), else by setting
    and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the umask (``tempfile.mkstemp`` makes 0o600,
    which a file written through a temp file and renamed into place would otherwise keep)."""
    return 0o666 & ~current_umask()
