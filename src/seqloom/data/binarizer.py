"""Turning text files into token-id datasets and word counts, a block of lines at a time.

The hot loop avoids per-token Python: each line is split by ``str.split`` (C), the words of a whole
block are mapped to ids by ``map(dict.__getitem__)`` (C, with ``__missing__`` for unknown words), and
end-of-sentence ids are inserted and written with numpy in bulk. Word counting uses ``Counter``'s C
counting loop. Each function here handles one chunk ``[start, end)`` of a file, so that a process
pool can run the chunks of one file in parallel (see ``seqloom.data.parallel``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from seqloom.data.dictionary import Dictionary
from seqloom.data.indexed_dataset import data_file_path, index_file_path, make_builder
from seqloom.data.line_reader import InputFormatError, iter_line_blocks, line_number_at

# called with the number of bytes just processed (drives the progress bar)
Progress = Callable[[int], None]


@dataclass
class BinarizeSummary:
    """Counts of one binarized file; prints as fairseq's ``N sents, M tokens, X% replaced``."""

    num_seq: int = 0
    num_tok: int = 0
    num_replaced: int | None = None  # words mapped to <unk>; None when no line was read (as fairseq)

    def merge(self, other: BinarizeSummary) -> None:
        self.num_seq += other.num_seq
        self.num_tok += other.num_tok
        if other.num_replaced is not None:
            self.num_replaced = (self.num_replaced or 0) + other.num_replaced

    @property
    def replaced_percent(self) -> float:
        return 100 * (self.num_replaced or 0) / self.num_tok if self.num_tok else 0.0

    def __str__(self) -> str:
        base = f"{self.num_seq} sents, {self.num_tok} tokens"
        if self.num_replaced is None:
            return base
        return f"{base}, {self.replaced_percent:.3}% replaced"


class _Lookup(dict):  # type: ignore[type-arg]
    """symbol -> id, giving ``unk`` for unknown symbols (``__missing__`` keeps hits in C)."""

    def __init__(self, indices: dict[str, int], unk: int) -> None:
        super().__init__(indices)
        self.unk = unk

    def __missing__(self, key: str) -> int:
        return self.unk


@dataclass(frozen=True)
class EncodedBlock:
    """Token ids of consecutive sentences, concatenated, with their lengths."""

    tokens: np.ndarray  # (N,) int64
    sizes: np.ndarray  # (B,) int64
    num_replaced: int


def encode_lines(
    lines: list[str], lookup: _Lookup, *, eos: int, unk_word: str, append_eos: bool = True
) -> EncodedBlock:
    """Encodes whitespace-tokenized ``lines`` with ``lookup``, appending ``eos`` to each sentence."""
    words_per_line = [line.split() for line in lines]
    lengths = np.fromiter(map(len, words_per_line), dtype=np.int64, count=len(lines))
    words = list(chain.from_iterable(words_per_line))
    ids = np.fromiter(map(lookup.__getitem__, words), dtype=np.int64, count=len(words))
    num_replaced = int(np.count_nonzero(ids == lookup.unk)) - words.count(unk_word)
    if not append_eos:
        return EncodedBlock(ids, lengths, num_replaced)
    sizes = lengths + 1
    tokens = np.full(int(sizes.sum()), eos, dtype=np.int64)
    is_word = np.ones(tokens.size, dtype=bool)
    is_word[np.cumsum(sizes) - 1] = False
    tokens[is_word] = ids
    return EncodedBlock(tokens, sizes, num_replaced)


def binarize_chunk(
    path: str,
    start: int,
    end: int,
    vocab: Dictionary,
    out_prefix: str,
    impl: str,
    progress: Progress | None = None,
    *,
    finalize: bool = True,
) -> tuple[BinarizeSummary, Any]:
    """Encodes the lines of ``path[start:end]`` into a dataset at ``out_prefix``; returns its summary.

    With ``finalize=False`` the builder is returned open (so other chunks can be merged into it).
    """
    lookup = _Lookup(vocab.indices, vocab.unk_index)
    builder = make_builder(data_file_path(out_prefix), impl, vocab_size=len(vocab))
    summary = BinarizeSummary()
    try:
        for block in iter_line_blocks(path, start, end):
            enc = encode_lines(block.lines, lookup, eos=vocab.eos_index, unk_word=vocab.unk_word)
            builder.add_items(enc.tokens, enc.sizes)
            summary.merge(BinarizeSummary(len(enc.sizes), int(enc.tokens.size), enc.num_replaced))
            if progress is not None:
                progress(block.nbytes)
        if finalize:
            builder.finalize(index_file_path(out_prefix))
    except BaseException:
        builder.discard()
        raise
    return summary, builder


def count_words_chunk(path: str, start: int, end: int, eos_word: str, progress: Progress | None = None) -> Counter[str]:
    """Word counts of ``path[start:end]`` (plus one ``eos_word`` per line, as fairseq counts)."""
    counts: Counter[str] = Counter()
    lines = 0
    for block in iter_line_blocks(path, start, end):
        counts.update(chain.from_iterable(map(str.split, block.lines)))
        lines += len(block.lines)
        if progress is not None:
            progress(block.nbytes)
    if lines:
        counts[eos_word] += lines
    return counts


def parse_alignment(line: str) -> np.ndarray:
    """``"0-1 2-3"`` -> ``[0, 1, 2, 3]`` (source/target position pairs, fairseq's ``parse_alignment``)."""
    pairs = line.split()
    out = np.empty(2 * len(pairs), dtype=np.int64)
    for k, pair in enumerate(pairs):
        src, sep, tgt = pair.partition("-")
        try:
            if not sep:
                raise ValueError
            out[2 * k], out[2 * k + 1] = int(src), int(tgt)
        except ValueError:
            raise ValueError(f"expected 'i-j' alignment pairs, got {pair!r}") from None
    return out


def _parse_alignments(lines: list[str], path: str, block_start: int) -> list[np.ndarray]:
    parsed = []
    for k, line in enumerate(lines):
        try:
            parsed.append(parse_alignment(line))
        except ValueError as err:
            raise InputFormatError(f"{path}:{line_number_at(path, block_start) + k}: {err}") from None
    return parsed


def binarize_alignment_chunk(
    path: str,
    start: int,
    end: int,
    out_prefix: str,
    impl: str,
    progress: Progress | None = None,
    *,
    finalize: bool = True,
) -> tuple[BinarizeSummary, Any]:
    """Binarizes alignment lines (no end-of-sentence), as ``binarize_chunk`` does for text."""
    builder = make_builder(data_file_path(out_prefix), impl, vocab_size=None)
    summary = BinarizeSummary()
    try:
        for block in iter_line_blocks(path, start, end):
            parsed = _parse_alignments(block.lines, path, block.start)
            sizes = np.fromiter(map(len, parsed), dtype=np.int64, count=len(parsed))
            builder.add_items(np.concatenate(parsed) if parsed else np.zeros(0, np.int64), sizes)
            summary.merge(BinarizeSummary(len(parsed), int(sizes.sum())))
            if progress is not None:
                progress(block.nbytes)
        if finalize:
            builder.finalize(index_file_path(out_prefix))
    except BaseException:
        builder.discard()
        raise
    return summary, builder


def remove_dataset(prefix: str) -> None:
    for p in (data_file_path(prefix), index_file_path(prefix)):
        if os.path.exists(p):
            os.unlink(p)
