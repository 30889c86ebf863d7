"""Reading text corpora fast and exactly as fairseq splits them into lines.

fairseq reads UTF-8 text files in text mode, where a line ends at ``\\n``, ``\\r\\n`` or a lone ``\\r``;
the last line need not end with a newline; an empty line is an (empty) sentence. Here files are read
in large binary blocks cut at line ends, decoded once per block and split with C string methods, so
the per-line cost stays small. Files are split between workers at line starts near equal byte
offsets (``find_offsets``), as fairseq does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from seqloom.data.bom import strip_bom

BLOCK_SIZE = 1 << 20


class InputFormatError(ValueError):
    """A corpus file that cannot be read as UTF-8 text, or parallel files that do not match."""


@dataclass(frozen=True)
class LineBlock:
    """Consecutive complete lines of a file and the bytes they span.

    ``text`` is the decoded lines with every line end turned into ``\\n``, each line (the last too)
    ending with one: ``text.count("\\n")`` is the number of lines.
    """

    text: str
    start: int  # byte offset of the first line
    nbytes: int

    @property
    def lines(self) -> list[str]:
        """The lines without their line ends."""
        return self.text.split("\n")[:-1]

    @property
    def num_lines(self) -> int:
        return self.text.count("\n")


def find_offsets(path: str, num_chunks: int) -> list[int]:
    """``num_chunks + 1`` byte offsets splitting ``path`` into chunks of whole lines (first 0, last the size)."""
    size = os.path.getsize(path)
    offsets = [0] * (num_chunks + 1)
    with open(path, "rb") as f:
        for i in range(1, num_chunks):
            f.seek(size // num_chunks * i)
            f.readline()
            offsets[i] = max(f.tell(), offsets[i - 1])
    offsets[-1] = size
    return offsets


def iter_line_blocks(
    path: str, start: int = 0, end: int | None = None, *, block_size: int = BLOCK_SIZE
) -> Iterator[LineBlock]:
    """Blocks of the lines starting in ``[start, end)`` (``start`` must be a line start)."""
    end = os.path.getsize(path) if end is None else end
    with open(path, "rb") as f:
        f.seek(start)
        pos, carry = start, b""
        while True:
            chunk = f.read(min(block_size, end - pos)) if pos < end else b""
            pos += len(chunk)
            data = carry + chunk
            if not data:
                return
            at_end = pos >= end or not chunk
            cut = len(data) if at_end else _last_line_end(data)
            carry = data[cut:]
            if cut:
                text = _decode(data[:cut], path, pos - len(data))
                if pos - len(data) == 0:  # the file's start: a byte-order mark is not text
                    text = strip_bom(text, path)
                yield LineBlock(text, pos - len(data), cut)
            if at_end:
                return


def _last_line_end(data: bytes) -> int:
    """The offset just past the last complete line end in ``data`` (0 if none is certain yet)."""
    nl = data.rfind(b"\n")
    if nl >= 0:
        return nl + 1
    cr = data.rfind(b"\r", 0, len(data) - 1)  # a final \r may be the first half of \r\n
    return cr + 1 if cr >= 0 else 0


def _decode(body: bytes, path: str, offset: int) -> str:
    """``body`` (whole lines of ``path`` from byte ``offset``) as text with ``\\n`` line ends, ending in one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        line = line_number_at(path, offset + err.start)
        raise InputFormatError(
            f"{path}:{line}: not valid UTF-8 ({err.reason} at byte {offset + err.start} of the file); "
            f"convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def iter_lines(path: str) -> Iterator[str]:
    """Every line of ``path`` without its line end."""
    for block in iter_line_blocks(path):
        yield from block.lines


def count_lines(path: str) -> int:
    """The number of lines (sentences) fairseq reads from ``path``, counted without decoding."""
    with open(path, "rb") as f:
        n, last = _count_line_ends(f, None)
    return n + (1 if last not in (b"", b"\n", b"\r") else 0)


def line_number_at(path: str, offset: int) -> int:
    """The 1-based number of the line holding byte ``offset`` of ``path``."""
    with open(path, "rb") as f:
        n, _ = _count_line_ends(f, offset)
    return n + 1


def _count_line_ends(f: BinaryIO, limit: int | None) -> tuple[int, bytes]:
    """Line ends (``\\n``, ``\\r\\n``, lone ``\\r``) in the next ``limit`` bytes of ``f`` (all if None), and the last byte."""
    n, last, prev_cr, left = 0, b"", False, limit
    while left is None or left > 0:
        data = f.read(BLOCK_SIZE if left is None else min(BLOCK_SIZE, left))
        if not data:
            break
        if left is not None:
            left -= len(data)
        n += data.count(b"\n")
        if b"\r" in data:
            n += data.count(b"\r") - data.count(b"\r\n")
        if prev_cr and data[:1] == b"\n":
            n -= 1  # a \r\n split between two reads: the \r was counted as a lone \r
        prev_cr = data[-1:] == b"\r"
        last = data[-1:]
    return n, last


def check_parallel(paths: tuple[str, str], count: Callable[[str], int] = count_lines) -> int:
    """The common line count of two parallel files; ``InputFormatError`` naming both if they differ."""
    a, b = (count(p) for p in paths)
    if a != b:
        raise InputFormatError(
            f"parallel files differ in length: {paths[0]} has {a} lines but {paths[1]} has {b}; "
            f"every source line needs its translation on the same line number"
        )
    return a
