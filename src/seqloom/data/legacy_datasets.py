"""fairseq's older dataset formats: TorchNet ``TNTIDX`` (``--dataset-impl lazy|cached``) and raw text.

``.idx`` of the TNTIDX format, little-endian::

    b"TNTIDX\\x00\\x00"   magic (8 bytes)
    uint64 1             version
    uint64 code, esize   dtype code (see DTYPE_CODES) and element size in bytes
    uint64 n, s          number of items, number of size entries (n for 1-D items)
    int64[n + 1]         dim_offsets (item i's shape is sizes[dim_offsets[i]:dim_offsets[i + 1]])
    int64[n + 1]         data_offsets (item i starts at element data_offsets[i] of .bin)
    int64[s]             sizes

fairseq's writer stores every id plus one (Lua's 1-based indexing); readers subtract it again when
``fix_lua_indexing`` (which fairseq's training-time loader always sets).
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

import numpy as np

from seqloom.data.indexed_dataset import (
    DTYPE_CODES,
    IndexedDatasetError,
    SizeSpill,
    _file_size,
    _map_file,
    data_file_path,
    dtype_code,
    index_file_path,
)
from seqloom.data.line_reader import iter_lines

if TYPE_CHECKING:
    import torch
    from numpy.typing import ArrayLike, DTypeLike

    from seqloom.data.dictionary import Dictionary

TNT_MAGIC = b"TNTIDX\x00\x00"
TNT_HEADER = struct.Struct("<8sQQQQQ")  # magic, version, code, element size, n, s


class IndexedDataset:
    """Reads a TNTIDX dataset (fairseq's ``IndexedDataset``) through a memory map of its ``.bin``."""

    def __init__(self, path: str | os.PathLike[str], fix_lua_indexing: bool = False) -> None:
        self.path = os.fspath(path)
        self.fix_lua_indexing = fix_lua_indexing
        self._read_index(index_file_path(self.path))
        bin_path = data_file_path(self.path)
        bin_size = _file_size(bin_path, "data")
        self._check_data(bin_path, bin_size)
        self._bin = _map_file(bin_path, bin_size)

    def _read_index(self, idx: str) -> None:
        file_size = _file_size(idx, "index")
        if file_size < TNT_HEADER.size:
            raise IndexedDatasetError(f"{idx}: truncated index: {file_size} bytes, shorter than the header")
        with open(idx, "rb") as f:
            magic, version, code, esize, n, s = TNT_HEADER.unpack(f.read(TNT_HEADER.size))
            if magic != TNT_MAGIC:
                hint = " (a mmap index: use --dataset-impl mmap)" if magic == b"MMIDIDX\x00" else ""
                raise IndexedDatasetError(f"{idx}: not a TNTIDX index: starts with {magic!r}{hint}")
            if version != 1:
                raise IndexedDatasetError(f"{idx}: unsupported index version {version} (only version 1 exists)")
            if code not in DTYPE_CODES:
                raise IndexedDatasetError(f"{idx}: unknown dtype code {code} (known: {sorted(DTYPE_CODES)})")
            needed = TNT_HEADER.size + 8 * (2 * (n + 1) + s)
            if file_size < needed:
                raise IndexedDatasetError(
                    f"{idx}: truncated index: {n} items and {s} sizes need {needed} bytes, the file has {file_size}"
                )
            self.dtype = np.dtype(DTYPE_CODES[code])
            self.element_size = int(esize)
            self.dim_offsets = np.fromfile(f, dtype=np.int64, count=n + 1)
            self.data_offsets = np.fromfile(f, dtype=np.int64, count=n + 1)
            self.sizes = np.fromfile(f, dtype=np.int64, count=s)
        self._len = int(n)
        if self.dim_offsets[-1] > s or (np.diff(self.dim_offsets) < 0).any():
            raise IndexedDatasetError(f"{idx}: corrupt index: dim_offsets do not fit the {s} sizes")

    def _check_data(self, bin_path: str, bin_size: int) -> None:
        if self._len == 0:
            return
        ends = self.data_offsets[-1] * self.element_size
        if (np.diff(self.data_offsets) < 0).any() or self.data_offsets[0] < 0 or ends > bin_size:
            raise IndexedDatasetError(
                f"{index_file_path(self.path)}: items end at byte {ends} but {bin_path} has {bin_size} bytes: "
                f"the index and data files do not match or one of them is truncated"
            )

    def __len__(self) -> int:
        return self._len

    def get_numpy(self, i: int) -> np.ndarray:
        """Item ``i`` as stored (ids + 1 for fairseq-written files), a zero-copy view of the ``.bin``."""
        if not 0 <= i < self._len:
            raise IndexError(f"item {i} out of range for {self.path} ({self._len} items)")
        shape = self.sizes[self.dim_offsets[i] : self.dim_offsets[i + 1]]
        count = int(np.prod(shape)) if len(shape) else 1
        a = np.frombuffer(
            self._bin, dtype=self.dtype, count=count, offset=int(self.data_offsets[i]) * self.element_size
        )
        return a.reshape(tuple(int(d) for d in shape))

    def __getitem__(self, i: int) -> torch.Tensor:
        import torch

        item = torch.from_numpy(self.get_numpy(i).astype(np.int64))
        if self.fix_lua_indexing:
            item -= 1
        return item

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self[i]

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def size(self, index: int) -> int:
        return int(self.sizes[index])

    @property
    def supports_prefetch(self) -> bool:
        return False

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        return os.path.exists(index_file_path(path)) and os.path.exists(data_file_path(path))


class IndexedCachedDataset(IndexedDataset):
    """A TNTIDX dataset read fully into memory at start (fairseq's ``--dataset-impl cached``)."""

    def __init__(self, path: str | os.PathLike[str], fix_lua_indexing: bool = False) -> None:
        super().__init__(path, fix_lua_indexing=fix_lua_indexing)
        self._bin = memoryview(bytes(self._bin))


class IndexedDatasetBuilder:
    """Writes a TNTIDX dataset exactly as fairseq's ``IndexedDatasetBuilder`` (int32, ids + 1), streaming."""

    def __init__(self, out_file: str | os.PathLike[str], dtype: DTypeLike = np.int32) -> None:
        self._dtype = np.dtype(dtype)
        # fairseq's table says 4 bytes for float64; keep it so that files stay identical
        self.element_size = 4 if self._dtype == np.float64 else self._dtype.itemsize
        self._bin_path = os.fspath(out_file)
        self._data: IO[bytes] = open(self._bin_path, "wb")
        self._sizes = SizeSpill(self._bin_path)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def add_item(self, tokens: torch.Tensor | ArrayLike) -> None:
        array = np.asarray(tokens.numpy() if hasattr(tokens, "numpy") else tokens).reshape(-1)
        self.add_items(array, np.array([array.size], dtype=np.int64))

    def add_items(self, tokens: np.ndarray, sizes: np.ndarray) -> None:
        self._data.write((np.asarray(tokens, dtype=np.int64) + 1).astype(self._dtype).tobytes())
        self._sizes.append(sizes)

    def merge_file_(self, another_file: str | os.PathLike[str]) -> None:
        other = IndexedDataset(another_file)
        if other.dtype != self._dtype:
            raise IndexedDatasetError(
                f"{index_file_path(another_file)}: dtype {other.dtype} differs from {self._dtype}"
            )
        if len(other.sizes) != len(other) or (np.diff(other.dim_offsets) != 1).any():
            raise IndexedDatasetError(f"{index_file_path(another_file)}: only datasets of 1-D items can be merged")
        self._sizes.append(other.sizes)
        del other
        with open(data_file_path(another_file), "rb") as f:
            shutil.copyfileobj(f, self._data, 1 << 22)

    def finalize(self, index_file: str | os.PathLike[str]) -> None:
        self._data.close()
        n = self._sizes.count
        try:
            with open(index_file, "wb") as f:
                f.write(TNT_HEADER.pack(TNT_MAGIC, 1, dtype_code(self._dtype), self.element_size, n, n))
                f.write(np.arange(n + 1, dtype=np.int64).tobytes())  # dim_offsets: every item is 1-D
                for offsets in self._sizes.offsets(1):  # data_offsets, counted in elements
                    f.write(offsets.tobytes())
                f.write(np.int64(sum(int(c.sum()) for c in self._sizes.chunks())).tobytes())
                for sizes in self._sizes.chunks():
                    f.write(sizes.astype(np.int64).tobytes())
        finally:
            self._sizes.remove()

    def discard(self) -> None:
        self._data.close()
        self._sizes.remove()
        if os.path.exists(self._bin_path):
            os.unlink(self._bin_path)


class IndexedRawTextDataset:
    """A text file whose lines are encoded with ``dictionary`` at start (``--dataset-impl raw``)."""

    def __init__(
        self, path: str | os.PathLike[str], dictionary: Dictionary, append_eos: bool = True, reverse_order: bool = False
    ) -> None:
        self.path = os.fspath(path)
        self.append_eos = append_eos
        self.reverse_order = reverse_order
        self.lines: list[str] = []
        self.tokens_list: list[torch.Tensor] = []
        self._read(dictionary)
        self.sizes = np.array([len(t) for t in self.tokens_list], dtype=np.int64)

    def _read(self, dictionary: Dictionary) -> None:
        for line in iter_lines(self.path):
            self.lines.append(line)
            tokens = dictionary.encode_line(line, append_eos=self.append_eos, reverse_order=self.reverse_order)
            self.tokens_list.append(tokens.long())

    def __len__(self) -> int:
        return len(self.tokens_list)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < len(self):
            raise IndexError(f"line {i} out of range for {self.path} ({len(self)} lines)")
        return self.tokens_list[i]

    def get_original_text(self, i: int) -> str:
        return self.lines[i]

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def size(self, index: int) -> int:
        return int(self.sizes[index])

    @property
    def supports_prefetch(self) -> bool:
        return False

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        return os.path.exists(path)
