"""fairseq's memory-mapped indexed dataset (``--dataset-impl mmap``): a ``.bin`` and a ``.idx`` file.

``.bin`` holds every sentence's token ids back to back (uint16 when the vocabulary has fewer than
65,500 symbols, else uint32, as fairseq 0.12's ``best_fitting_int_dtype``). ``.idx`` is, little-endian::

    b"MMIDIDX\\x00\\x00"  magic (9 bytes)
    uint64 1             version
    uint8  code          dtype of the .bin (see DTYPE_CODES)
    uint64 n             number of sentences
    int32[n]             sizes (tokens per sentence)
    int64[n]             pointers (byte offset of each sentence in .bin)

(fairseq has no ``doc_idx`` section; that is Megatron's variant of the format.)
Reads are zero-copy views of the memory-mapped files; a file that does not hold together raises
``IndexedDatasetError`` naming the file and the problem. The legacy ``TNTIDX`` format and ``raw`` text
live in ``seqloom.data.legacy_datasets``; ``seqloom.data.formats.make_dataset`` picks the right reader.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from numpy.typing import ArrayLike, DTypeLike


MMAP_MAGIC = b"MMIDIDX\x00\x00"
MMAP_HEADER = struct.Struct("<9sQBQ")  # magic, version, dtype code, count
# the element type codes of the index header (a file-format fact): 1 uint8 ... 10 uint64, 7 the same as 6
DTYPE_CODES: dict[int, type] = dict(
    enumerate(
        (np.uint8, np.int8, np.int16, np.int32, np.int64, np.float64, np.double, np.uint16, np.uint32, np.uint64), 1
    )
)
_CHUNK = 1 << 18  # entries per chunk when streaming sizes / checking pointers (bounds memory)


class IndexedDatasetError(ValueError):
    """An ``.idx``/``.bin`` pair that is truncated, corrupt or of another format."""


def index_file_path(prefix: str | os.PathLike[str]) -> str:
    return f"{os.fspath(prefix)}.idx"


def data_file_path(prefix: str | os.PathLike[str]) -> str:
    return f"{os.fspath(prefix)}.bin"


def dtype_code(dtype: DTypeLike) -> int:
    """The header code of ``dtype`` (the first match, as fairseq: float64 is 6)."""
    dtype = np.dtype(dtype)
    for code, candidate in DTYPE_CODES.items():
        if np.dtype(candidate) == dtype:
            return code
    raise ValueError(f"dtype {dtype} cannot be stored in an indexed dataset")


def best_fitting_int_dtype(max_int_to_represent: int | None) -> type:
    """uint16 below 65,500, uint32 below 2**32 - 1 (and when unknown), else int64 (fairseq 0.12)."""
    if max_int_to_represent is None:
        return np.uint32
    if max_int_to_represent < 65500:
        return np.uint16
    if max_int_to_represent < 4294967295:
        return np.uint32
    return np.int64


def _map_file(path: str, size: int) -> memoryview:
    """A read-only memory map of ``path`` (an empty buffer for an empty file, which mmap refuses)."""
    if size == 0:
        return memoryview(b"")
    # ``.data`` is memoryview(array) itself; numpy's stubs give ndarray the buffer protocol only from Python 3.12
    return np.memmap(path, mode="r", dtype=np.uint8).data


class MMapIndex:
    """The parsed and checked ``.idx`` of a mmap dataset: ``dtype``, ``sizes`` and ``pointers``."""

    def __init__(self, path: str) -> None:
        self.path = path
        file_size = _file_size(path, "index")
        if file_size < MMAP_HEADER.size:
            raise IndexedDatasetError(
                f"{path}: truncated index: {file_size} bytes, shorter than the {MMAP_HEADER.size}-byte header"
            )
        with open(path, "rb") as f:
            magic, version, code, count = MMAP_HEADER.unpack(f.read(MMAP_HEADER.size))
        if magic != MMAP_MAGIC:
            raise IndexedDatasetError(f"{path}: not a mmap index: {_describe_magic(magic)}")
        if version != 1:
            raise IndexedDatasetError(f"{path}: unsupported index version {version} (only version 1 exists)")
        if code not in DTYPE_CODES:
            raise IndexedDatasetError(f"{path}: unknown dtype code {code} (known: {sorted(DTYPE_CODES)})")
        needed = MMAP_HEADER.size + count * 12
        if file_size < needed:
            raise IndexedDatasetError(
                f"{path}: truncated index: the header announces {count} sentences, which need {needed} bytes, "
                f"but the file has {file_size}"
            )
        self.dtype = np.dtype(DTYPE_CODES[code])
        self._buffer = _map_file(path, file_size)
        self.sizes: np.ndarray = np.frombuffer(self._buffer, dtype=np.int32, count=count, offset=MMAP_HEADER.size)
        self.pointers: np.ndarray = np.frombuffer(
            self._buffer, dtype=np.int64, count=count, offset=MMAP_HEADER.size + count * 4
        )

    def __len__(self) -> int:
        return len(self.sizes)

    def check_against(self, bin_path: str, bin_size: int) -> None:
        """Raises unless every sentence lies inside a ``.bin`` of ``bin_size`` bytes."""
        itemsize = self.dtype.itemsize
        for start in range(0, len(self), _CHUNK):
            sizes = self.sizes[start : start + _CHUNK].astype(np.int64)
            pointers = self.pointers[start : start + _CHUNK]
            bad = (sizes < 0) | (pointers < 0) | (pointers + sizes * itemsize > bin_size)
            if bad.any():
                i = int(np.argmax(bad))
                raise IndexedDatasetError(
                    f"{self.path}: sentence {start + i} (size {int(sizes[i])}, byte offset {int(pointers[i])}) "
                    f"overruns {bin_path}, which has {bin_size} bytes: the index and data files do not match "
                    f"or one of them is truncated"
                )


class MMapIndexedDataset:
    """Sentences of token ids from ``{prefix}.idx`` / ``{prefix}.bin`` (fairseq's MMapIndexedDataset).

    ``ds[i]`` is an int64 tensor (T,); ``ds.get_numpy(i)`` the zero-copy view in the file's dtype;
    ``ds.sizes`` the int32 numpy array of lengths.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._index = MMapIndex(index_file_path(self._path))
        bin_path = data_file_path(self._path)
        bin_size = _file_size(bin_path, "data")
        self._index.check_against(bin_path, bin_size)
        self._bin = _map_file(bin_path, bin_size)

    def __getstate__(self) -> str:
        return self._path

    def __setstate__(self, state: str) -> None:
        self.__init__(state)  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self._index)

    def get_numpy(self, i: int) -> np.ndarray:
        """Sentence ``i`` as a read-only view of the ``.bin`` (no copy), in the file's dtype."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sentence {i} out of range for {self._path} ({len(self)} sentences)")
        return np.frombuffer(
            self._bin, dtype=self._index.dtype, count=int(self._index.sizes[i]), offset=int(self._index.pointers[i])
        )

    def __getitem__(self, i: int) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.get_numpy(i).astype(np.int64))

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self[i]

    @property
    def sizes(self) -> np.ndarray:
        return self._index.sizes

    @property
    def dtype(self) -> np.dtype:
        return self._index.dtype

    def num_tokens(self, index: int) -> int:
        return int(self._index.sizes[index])

    def size(self, index: int) -> int:
        return int(self._index.sizes[index])

    @property
    def supports_prefetch(self) -> bool:
        return False

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        return os.path.exists(index_file_path(path)) and os.path.exists(data_file_path(path))


class SizeSpill:
    """Sentence sizes appended to a scratch file beside the output and read back in chunks.

    Builders keep no per-sentence list in memory, so preprocessing memory does not grow with the corpus.
    """

    def __init__(self, beside: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix=".sizes-", dir=os.path.dirname(beside) or ".")
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self.count = 0

    def append(self, sizes: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(sizes, dtype=np.int32).tobytes())
        self.count += len(sizes)

    def chunks(self) -> Iterator[np.ndarray]:
        """The sizes in order, as int32 arrays of at most ``_CHUNK`` entries."""
        self._file.close()
        with open(self.path, "rb") as f:
            while (sizes := np.fromfile(f, dtype=np.int32, count=_CHUNK)).size:
                yield sizes

    def offsets(self, scale: int) -> Iterator[np.ndarray]:
        """Exclusive running sums of ``size * scale`` (int64): each sentence's start."""
        total = 0
        for sizes in self.chunks():
            ends = np.cumsum(sizes.astype(np.int64) * scale) + total
            yield ends - sizes * scale
            total = int(ends[-1])

    def remove(self) -> None:
        self._file.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


class MMapIndexedDatasetBuilder:
    """Writes a mmap dataset byte-identical to fairseq's, streaming: memory does not grow with the data.

    Token ids go straight to the ``.bin``; sizes go to a ``SizeSpill`` and become the index (sizes,
    then cumulative pointers) chunk by chunk in ``finalize``.
    """

    def __init__(self, out_file: str | os.PathLike[str], dtype: DTypeLike = np.int64) -> None:
        self._bin_path = os.fspath(out_file)
        self._dtype = np.dtype(dtype)
        self._data: IO[bytes] = open(self._bin_path, "wb")
        self._sizes = SizeSpill(self._bin_path)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def add_item(self, tokens: torch.Tensor | ArrayLike) -> None:
        """Appends one sentence (a tensor, array or list of ids)."""
        array = np.asarray(tokens.numpy() if hasattr(tokens, "numpy") else tokens, dtype=self._dtype).reshape(-1)
        self.add_items(array, np.array([array.size], dtype=np.int32))

    def add_items(self, tokens: np.ndarray, sizes: np.ndarray) -> None:
        """Appends many sentences at once: ``tokens`` concatenated, ``sizes`` their lengths."""
        self._data.write(np.ascontiguousarray(tokens, dtype=self._dtype).tobytes())
        self._sizes.append(sizes)

    def merge_file_(self, another_file: str | os.PathLike[str]) -> None:
        """Appends the dataset at prefix ``another_file`` (same dtype), e.g. a worker's chunk."""
        other = MMapIndexedDataset(another_file)
        if other.dtype != self._dtype:
            raise IndexedDatasetError(
                f"{index_file_path(another_file)}: dtype {other.dtype} differs from {self._dtype}; cannot merge"
            )
        for start in range(0, len(other), _CHUNK):
            self._sizes.append(other.sizes[start : start + _CHUNK])
        del other
        with open(data_file_path(another_file), "rb") as f:
            shutil.copyfileobj(f, self._data, 1 << 22)

    def finalize(self, index_file: str | os.PathLike[str]) -> None:
        """Closes the ``.bin`` and writes the ``.idx``."""
        self._data.close()
        try:
            with open(index_file, "wb") as out:
                out.write(MMAP_HEADER.pack(MMAP_MAGIC, 1, dtype_code(self._dtype), self._sizes.count))
                for sizes in self._sizes.chunks():
                    out.write(sizes.tobytes())
                for pointers in self._sizes.offsets(self._dtype.itemsize):
                    out.write(pointers.tobytes())
        finally:
            self._sizes.remove()

    def discard(self) -> None:
        """Closes and deletes what was written (after an error)."""
        self._data.close()
        self._sizes.remove()
        if os.path.exists(self._bin_path):
            os.unlink(self._bin_path)


def _file_size(path: str, what: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        raise IndexedDatasetError(f"{path}: {what} file not found (an indexed dataset needs .idx and .bin)") from None


def _describe_magic(magic: bytes) -> str:
    if magic.startswith(b"TNTIDX\x00\x00"):
        return "it is a legacy TNTIDX index (use --dataset-impl lazy or cached)"
    return f"starts with {magic!r} instead of {MMAP_MAGIC!r}"
