"""Datasets by ``--dataset-impl`` name: the reader or writer of each format fairseq's data folders use.

``mmap`` lives in :mod:`seqloom.data.indexed_dataset`, ``lazy``/``cached`` (TNTIDX) and ``raw`` text in
:mod:`seqloom.data.legacy_datasets`; this module imports both and picks one by name.
"""

from __future__ import annotations

import os

from seqloom.data.dictionary import Dictionary
from seqloom.data.indexed_dataset import (
    MMAP_MAGIC,
    IndexedDatasetError,
    MMapIndexedDataset,
    MMapIndexedDatasetBuilder,
    _describe_magic,
    best_fitting_int_dtype,
    data_file_path,
    index_file_path,
)
from seqloom.data.legacy_datasets import (
    IndexedCachedDataset,
    IndexedDataset,
    IndexedDatasetBuilder,
    IndexedRawTextDataset,
)

DATASET_IMPLS = ("raw", "lazy", "cached", "mmap")
# what make_dataset opens and make_builder returns, by format
FormatReader = MMapIndexedDataset | IndexedDataset | IndexedRawTextDataset
FormatWriter = MMapIndexedDatasetBuilder | IndexedDatasetBuilder


def make_builder(out_file: str | os.PathLike[str], impl: str, vocab_size: int | None = None) -> FormatWriter:
    """A builder writing ``impl`` (``mmap``; ``lazy``/``cached`` write the legacy TNTIDX format)."""
    if impl == "mmap":
        return MMapIndexedDatasetBuilder(out_file, dtype=best_fitting_int_dtype(vocab_size))
    if impl in ("lazy", "cached"):
        return IndexedDatasetBuilder(out_file)
    raise ValueError(f"--dataset-impl {impl!r} cannot be written by a builder (choose mmap, lazy or cached)")


def make_dataset(
    path: str | os.PathLike[str],
    impl: str,
    *,
    fix_lua_indexing: bool = True,
    dictionary: Dictionary | None = None,
) -> FormatReader | None:
    """Opens the dataset at prefix ``path`` written as ``impl``; None when its files do not exist.

    ``fix_lua_indexing`` (legacy formats only) undoes the +1 that fairseq's TNTIDX writer adds, as
    fairseq's ``load_indexed_dataset`` does. ``raw`` needs the ``dictionary`` to encode the text.
    """
    path = os.fspath(path)
    if impl == "raw" and os.path.exists(path):
        if dictionary is None:
            raise ValueError(f"{path}: --dataset-impl raw needs a dictionary to encode the text")
        return IndexedRawTextDataset(path, dictionary)
    if impl == "mmap" and MMapIndexedDataset.exists(path):
        return MMapIndexedDataset(path)
    if impl == "lazy" and IndexedDataset.exists(path):
        return IndexedDataset(path, fix_lua_indexing=fix_lua_indexing)
    if impl == "cached" and IndexedDataset.exists(path):
        return IndexedCachedDataset(path, fix_lua_indexing=fix_lua_indexing)
    if impl not in DATASET_IMPLS:
        raise ValueError(f"unknown --dataset-impl {impl!r} (choose from {', '.join(DATASET_IMPLS)})")
    return None


def data_exists(path: str | os.PathLike[str], impl: str | None = None) -> bool:
    """Whether the files of the dataset at prefix ``path`` exist (for ``impl``, or any format if None)."""
    path = os.fspath(path)
    if impl == "raw":
        return os.path.exists(path)
    if impl is None and os.path.exists(path):
        return True
    return os.path.exists(index_file_path(path)) and os.path.exists(data_file_path(path))


def infer_dataset_impl(path: str | os.PathLike[str]) -> str | None:
    """``raw``, ``mmap`` or ``cached`` from the files at prefix ``path`` (None if there are none).

    An ``.idx`` of neither format raises :class:`IndexedDatasetError` naming the file and its first bytes
    (fairseq, and formerly seqloom, went on as if no data were there: "split not found" hid the cause)."""
    path = os.fspath(path)
    if os.path.exists(path):
        return "raw"
    if not data_exists(path):
        return None
    with open(index_file_path(path), "rb") as f:
        magic = f.read(9)
    if magic == MMAP_MAGIC:
        return "mmap"
    if magic[:8] == b"TNTIDX\x00\x00":
        return "cached"
    raise IndexedDatasetError(
        f"{index_file_path(path)}: not an index of an indexed dataset (mmap or TNTIDX): {_describe_magic(magic)}; "
        "the file is damaged or of another program: preprocess the data again (seqloom preprocess)"
    )
