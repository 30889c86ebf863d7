"""Reading and writing checkpoint files safely.

Loading never runs pickled code: ``torch.load(weights_only=True)`` with a short allow-list, enough for
fairseq's checkpoints (``args`` is an ``argparse.Namespace``; hydra-era ``cfg`` is a plain dict, or a
pickled omegaconf ``DictConfig`` that :mod:`seqloom.checkpoint.omegaconf_compat` reads as plain data
without importing omegaconf). Saving is atomic: a crash mid-save leaves the previous file intact.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from seqloom.checkpoint.omegaconf_compat import OMEGACONF_STAND_INS, to_plain
from seqloom.paths import plain_file_mode, unwritable_reason

# Globals a checkpoint may reference besides tensors and builtin containers.
SAFE_GLOBALS: list[Any] = [argparse.Namespace, *OMEGACONF_STAND_INS]


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read or written; the message names the file and what to do."""


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads the checkpoint dict at ``path`` without executing arbitrary pickled code.

    Raises :class:`FileNotFoundError` for a missing file and :class:`CheckpointError` for a corrupt or
    truncated file or one that references a global outside the allow-list (the name is in the message).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {file}: no such file")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            state = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(_unpickling_message(file, err)) from None
    except (EOFError, zipfile.BadZipFile, RuntimeError, ValueError) as err:
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


def _unpickling_message(file: Path, err: pickle.UnpicklingError) -> str:
    text = str(err)
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
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError):
            kept = "the file there before is intact" if file.exists() else "nothing was written"
            raise CheckpointError(f"checkpoint {file}: writing failed ({err.strerror or err}); {kept}") from None
        raise
    _fsync_dir(file.parent)


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
