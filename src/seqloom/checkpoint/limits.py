"""Bounds on what a checkpoint file may make the loader allocate, checked before any tensor is read.

A ``.pt`` file is a zip archive: ``data.pkl`` (the pickled structure) and one record per tensor storage
(``data/0``, ``data/1``...). Three sizes are only declared, and a crafted file can declare them huge:

* a compressed record's uncompressed size (torch writes records stored, so a 1 MB record expanding to 1 GB
  is no checkpoint torch made);
* a stored record's size, which must fit in the file, and all stored records together too (records of a zip
  may overlap, so several could claim the same bytes);
* the size of each storage the pickle declares (torch allocates it before reading the record), which must
  match its record; and the shape of a numpy object array (numpy allocates it before reading its values),
  which its pickled values must fill.

With these, the memory loading takes is bounded by the file's size. Where the caller knows the model (resuming
training), the storages together must also be plausible for it: its parameters, a few times over for the
optimizer's moments, fp32 copies and EMA weights, plus :data:`REST_BYTES` for the rest.

Reading ``data.pkl`` here never runs code from it: every global it names becomes an inert stand-in.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# what a checkpoint may hold besides its model's weights (and their optimizer and EMA copies)
REST_BYTES = 64 * 2**20
# a pickle larger than this is no fairseq/seqloom checkpoint structure (tensors are in records of their own)
PICKLE_BYTES = 256 * 2**20
# how much more a compressed record may expand to than its compressed size, beyond REST_BYTES
EXPANSION = 8
# weights, two optimizer moments, fp32 master copies, EMA weights and their fp32 copies, with room to spare
COPIES_OF_THE_MODEL = 8

# bytes per element of the storage classes torch's pickles name (UntypedStorage counts bytes)
ELEMENT_BYTES = {
    "UntypedStorage": 1, "ByteStorage": 1, "CharStorage": 1, "BoolStorage": 1, "QUInt8Storage": 1,
    "QInt8Storage": 1, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "ShortStorage": 2, "HalfStorage": 2,
    "BFloat16Storage": 2, "IntStorage": 4, "FloatStorage": 4, "QInt32Storage": 4, "ComplexHalfStorage": 4,
    "LongStorage": 8, "DoubleStorage": 8, "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
}  # fmt: skip


class TooLarge(ValueError):
    """A record or storage of the file declares more bytes than is plausible; the message says which and why."""


@dataclass(frozen=True)
class Storage:
    """One storage the pickle declares: its record key, storage class name and size in bytes (None: unknown)."""

    key: str
    kind: str
    nbytes: int | None


def check_declared_sizes(file: Path, *, expected_params: int | None = None) -> None:
    """Raises :class:`TooLarge` (message: file, record, declared size, limit) if ``file`` declares more than it can
    hold or, with ``expected_params`` (the model's parameter count), more than such a model's checkpoint would."""
    if not zipfile.is_zipfile(file):
        return  # torch's legacy format: read in sequence, bounded by the file itself
    on_disk = file.stat().st_size
    with zipfile.ZipFile(file) as archive:
        infos = archive.infolist()
        _check_records(file, infos, on_disk, expected_params)
        pickles = [i for i in infos if i.filename.endswith("data.pkl")]
        if len(pickles) != 1:
            return  # torch reports a missing pickle itself
        data = archive.read(pickles[0])
    prefix = pickles[0].filename[: -len("data.pkl")]
    records = {i.filename[len(prefix) :]: i.file_size for i in infos if i.filename.startswith(prefix)}
    try:
        storages = declared_storages(data)
    except TooLarge as err:
        raise TooLarge(f"checkpoint {file}: {err}") from None
    total, counted = 0, set()
    for storage in storages:  # (a storage shared by several tensors, tied embeddings, is declared each time)
        name = f"data/{storage.key}"
        if storage.nbytes is None or name not in records:
            continue  # unknown classes are refused by the loader; a missing record is reported by torch
        if storage.nbytes > records[name]:
            raise TooLarge(
                f"checkpoint {file}: refused to load: its pickle declares a {storage.kind} of {storage.nbytes:,} bytes "
                f"for record '{prefix}{name}', which holds {records[name]:,} bytes (the limit); the file is damaged "
                "or crafted"
            )
        if name not in counted:
            counted.add(name)
            total += storage.nbytes
    if expected_params is not None:
        limit = expected_params * 4 * COPIES_OF_THE_MODEL + REST_BYTES
        if total > limit:
            raise TooLarge(
                f"checkpoint {file}: refused to load: its tensors declare {total:,} bytes in all, more than "
                f"{limit:,} (the limit for a model of {expected_params:,} parameters: its weights {COPIES_OF_THE_MODEL} "
                f"times over as float32, plus {REST_BYTES // 2**20} MiB); is it the checkpoint of another model?"
            )


def _check_records(file: Path, infos: list[zipfile.ZipInfo], on_disk: int, expected_params: int | None) -> None:
    stored_total = 0
    for info in infos:
        name, declared = info.filename, info.file_size
        if info.compress_type == zipfile.ZIP_STORED:
            stored_total += info.compress_size
            limit, why = on_disk, "the file's own size: a record stored uncompressed cannot be larger"
        else:
            limit = info.compress_size * EXPANSION + REST_BYTES
            if expected_params is not None:
                limit = max(limit, expected_params * 4 * COPIES_OF_THE_MODEL + REST_BYTES)
            why = f"{EXPANSION} times its {info.compress_size:,} compressed bytes plus {REST_BYTES // 2**20} MiB"
        if name.endswith("data.pkl") and PICKLE_BYTES < limit:
            limit, why = PICKLE_BYTES, "seqloom's cap on a checkpoint's pickled structure"
        if declared > limit:
            raise TooLarge(
                f"checkpoint {file}: refused to load: record '{name}' declares {declared:,} bytes, more than "
                f"{limit:,} ({why}); the file is damaged or crafted"
            )
    if stored_total > on_disk:
        raise TooLarge(
            f"checkpoint {file}: refused to load: its uncompressed records declare {stored_total:,} bytes together, "
            f"more than the file's {on_disk:,} (records overlap); the file is damaged or crafted"
        )


class _StandIn:
    """Whatever a global in the pickle names: takes any arguments and state, does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        if str(getattr(self, "origin", "")).endswith("multiarray._reconstruct"):
            _check_array_state(state)

    def __call__(self, *args: Any, **kwargs: Any) -> _StandIn:
        return _StandIn(*args)


def _check_array_state(state: Any) -> None:
    """numpy allocates an object array's whole shape before it reads the pickled list: the list must fill it."""
    if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[1], tuple)):
        return
    shape, data = state[1], state[4]
    if isinstance(data, list) and all(isinstance(n, int) for n in shape) and math.prod(shape) > len(data):
        raise TooLarge(
            f"refused to load: a numpy array declares the shape {shape} but holds {len(data):,} values; the file is "
            "damaged or crafted"
        )


def _stand_in_class(module: str, name: str) -> type[_StandIn]:
    return type(name if name.isidentifier() else "Global", (_StandIn,), {"origin": f"{module}.{name}"})


class _DeclarationReader(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """The pure-Python unpickler (its memo is a dict, so a crafted memo index allocates nothing), with every
    global an inert stand-in; it collects torch's persistent storage ids."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.storages: list[Storage] = []

    def find_class(self, module: str, name: str) -> Any:
        return _stand_in_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            kind = getattr(pid[1], "origin", str(pid[1])).rsplit(".", 1)[-1]
            numel, size = pid[4], ELEMENT_BYTES.get(kind)
            nbytes = numel * size if isinstance(numel, int) and size is not None else None
            self.storages.append(Storage(str(pid[2]), kind, nbytes))
        return _StandIn()


def declared_storages(data: bytes) -> list[Storage]:
    """The storages a torch pickle declares, read without running anything it names ([] if it is unreadable:
    the real loader then reports why)."""
    reader = _DeclarationReader(data)
    try:
        reader.load()
    except TooLarge:
        raise
    except Exception:
        pass  # a damaged pickle: what was read so far still counts
    return reader.storages
