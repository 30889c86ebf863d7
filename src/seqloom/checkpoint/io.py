"""Reading and writing checkpoint files safely.

Loading never runs pickled code: ``torch.load(weights_only=True)`` with a short allow-list, enough for
fairseq's checkpoints (``args`` is an ``argparse.Namespace``; hydra-era ``cfg`` is a plain dict, or a
pickled omegaconf ``DictConfig`` that :mod:`seqloom.checkpoint.omegaconf_compat` reads as plain data
without importing omegaconf; numpy arrays, scalars and dtypes, as fairseq's ``--eval-bleu`` meters hold
them, through the guarded functions of :mod:`seqloom.checkpoint.numpy_compat`). Saving is atomic: a crash mid-save leaves the previous file intact.
"""

from __future__ import annotations

import argparse
import errno
import os
import pickle
import re
import secrets
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from seqloom.checkpoint.limits import TooLarge, check_declared_sizes
from seqloom.checkpoint.numpy_compat import NUMPY_SAFE_GLOBALS
from seqloom.checkpoint.omegaconf_compat import OMEGACONF_STAND_INS, to_plain
from seqloom.paths import plain_file_mode, unwritable_reason

# Globals a checkpoint may reference besides tensors and builtin containers.
SAFE_GLOBALS: list[Any] = [argparse.Namespace, *OMEGACONF_STAND_INS, *NUMPY_SAFE_GLOBALS]


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read or written; the message names the file and what to do."""


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu", expected_params: int | None = None
) -> dict[str, Any]:
    """Loads the checkpoint dict at ``path`` without executing arbitrary pickled code.

    Before any tensor is read, the sizes the file declares are checked (:mod:`seqloom.checkpoint.limits`):
    memory is bounded by the file's size and, given ``expected_params`` (the parameters of the model it is
    meant for), by what such a model's checkpoint holds.

    Raises :class:`FileNotFoundError` for a missing file and :class:`CheckpointError` for a corrupt or
    truncated file, one that declares implausible sizes, or one that references a global outside the
    allow-list (the name is in the message).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {file}: no such file")
    try:
        check_declared_sizes(file, expected_params=expected_params)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            state = torch.load(file, map_location=map_location, weights_only=True)
    except TooLarge as err:
        raise CheckpointError(str(err)) from None
    except MemoryError:
        raise CheckpointError(_memory_message(file)) from None
    except pickle.UnpicklingError as err:
        raise CheckpointError(_unpickling_message(file, err)) from None
    except (EOFError, zipfile.BadZipFile, RuntimeError, ValueError) as err:
        if _out_of_memory(err):
            raise CheckpointError(_memory_message(file)) from None
        raise CheckpointError(
            f"checkpoint {file}: cannot be read, the file is truncated or corrupt ({type(err).__name__}: {err}); "
            "re-copy it or use an older checkpoint"
        ) from None
    except OSError as err:
        raise CheckpointError(f"checkpoint {file}: cannot be read ({err.strerror or err})") from None
    except Exception as err:  # the weights-only unpickler fails on foreign bytes with KeyError, IndexError, ...
        raise CheckpointError(
            f"checkpoint {file}: not a readable PyTorch checkpoint ({type(err).__name__}: {err}); "
            "the file may be corrupt or of another format"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {file}: expected a dict at the top level, found {type(state).__name__}")
    return to_plain(state)


def _out_of_memory(err: BaseException) -> bool:
    """torch reports a failed allocation as a RuntimeError ("DefaultCPUAllocator: can't allocate memory ...")."""
    text = str(err).lower()
    return "can't allocate memory" in text or "not enough memory" in text or "out of memory" in text


def _memory_message(file: Path) -> str:
    size = file.stat().st_size
    return (
        f"checkpoint {file}: not enough memory to load it (the file is {size:,} bytes; loading needs about as "
        "much free memory, more if it is later moved to a GPU); free memory or raise the process's memory limit"
    )


def _unpickling_message(file: Path, err: pickle.UnpicklingError) -> str:
    text = str(err)
    numpy_value = re.search(r"numpy value refused: ([^\n]*)", text)
    if numpy_value:
        return (
            f"checkpoint {file}: refused to load: it holds {numpy_value.group(1)}, which numpy never writes; the "
            "file was altered or made by another program"
        )
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text) or re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (
            f"checkpoint {file}: refused to load: it references the Python global {found.group(1)}, which is not "
            "on seqloom's allow-list of safe types (loading never executes pickled code). If you trust the file, "
            "convert it with torch.load(weights_only=False) into plain tensors/dicts and save it again"
        )
    # torch's message opens with advice to load with weights_only=False, which a damaged or foreign file does
    # not deserve: report the unpickler's own reason (e.g. "Unsupported operand 103" for a text file)
    reason = re.search(r"Unpickler error:\s*(\S[^\n]*)", text)
    first = reason.group(1) if reason else (text.strip().splitlines()[0] if text.strip() else type(err).__name__)
    return (
        f"checkpoint {file}: not a readable PyTorch checkpoint ({first}); the file may be corrupt or of another format"
    )


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Writes ``state`` to ``path`` atomically: a temp file in the same folder, fsync, then rename.

    Readers see either the old file or the complete new one, never a partial write.
    """
    file = Path(path)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    except OSError as err:
        raise CheckpointError(f"checkpoint {file}: cannot be written ({unwritable_reason(file, err)})") from None
    try:
        if hasattr(os, "fchmod"):  # as a plain open would make it (mkstemp's 0600 hid it from the group)
            os.fchmod(fd, plain_file_mode())
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, file)
    except BaseException as err:
        _remove_quietly(tmp_name)
        failure = write_failure(file, err)
        if failure is not None:
            raise failure from None
        raise
    _fsync_dir(file.parent)


class CheckpointWriteError(CheckpointError):
    """Writing ``path`` failed for ``reason`` (the OS's, in words: ``no space left on device ...``); the file
    there before, if any, is intact and no temp file is left."""

    def __init__(self, message: str, *, path: Path, reason: str, errno: int | None) -> None:
        super().__init__(message)
        self.path, self.reason, self.errno = path, reason, errno


def write_failure(file: Path, err: BaseException) -> CheckpointWriteError | None:
    """The :class:`CheckpointWriteError` of an OS error behind ``err`` (``torch.save`` reports a failed write
    of its file object as a ``RuntimeError`` caused by the ``OSError``), or None if there is none."""
    os_err: BaseException | None = err
    while os_err is not None and not isinstance(os_err, OSError):
        os_err = os_err.__cause__ or os_err.__context__
    if not isinstance(os_err, OSError):
        return None
    kept = f"the previous {file.name} is intact" if file.exists() else "nothing was written"
    if os_err.errno in (errno.ENOSPC, errno.EDQUOT):
        full = "no space left" if os_err.errno == errno.ENOSPC else "disk quota exceeded"
        reason = f"{full} on {device_of(file.parent)}"
        return CheckpointWriteError(f"{reason} writing {file}; {kept}", path=file, reason=reason, errno=os_err.errno)
    reason = unwritable_reason(file, os_err)
    kept = "the file there before is intact" if file.exists() else "nothing was written"
    return CheckpointWriteError(f"checkpoint {file}: writing failed ({reason}); {kept}", path=file, reason=reason,
                                errno=os_err.errno)  # fmt: skip


def device_of(folder: Path) -> str:
    """The device holding ``folder``, as people know it: ``/dev/sda1 (mounted at /data)``, or the mount point."""
    mount = Path(os.path.abspath(folder))
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            sources = {fields[1]: fields[0] for fields in (line.split() for line in f) if len(fields) > 1}
    except OSError:
        sources = {}
    source = sources.get(str(mount))
    return f"{source} (mounted at {mount})" if source else f"the device mounted at {mount}"


def copy_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copies the checkpoint ``src`` to ``dst`` atomically (a temp file beside ``dst``, then a rename); a
    failed copy leaves ``dst`` as it was and no temp file (:class:`CheckpointWriteError`)."""
    file = Path(dst)
    tmp_name = str(file.parent / f".{file.name}.{secrets.token_hex(4)}.tmp")  # the temp-name scheme of mkstemp
    try:
        shutil.copyfile(src, tmp_name)
        os.replace(tmp_name, file)
    except BaseException as err:
        _remove_quietly(tmp_name)
        failure = write_failure(file, err)
        if failure is not None:
            raise failure from None
        raise


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(folder: Path) -> None:
    """Makes the rename durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
