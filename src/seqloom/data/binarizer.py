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

import numpy as np

from seqloom.data.dictionary import Dictionary
from seqloom.data.formats import FormatWriter, make_builder
from seqloom.data.indexed_dataset import data_file_path, index_file_path
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


_EOL = "\x00"  # stands for a line end while a block is split in one call (never inside a word)


class Lookups:
    """The id lookups of one dictionary: ``plain``, and ``marked`` where the line-end marker gives -1."""

    def __init__(self, vocab: Dictionary) -> None:
        self.plain = _Lookup(vocab.indices, vocab.unk_index)
        self.marked = _Lookup(vocab.indices, vocab.unk_index)
        self.marked[_EOL] = -1
        self.unk, self.eos, self.unk_word = vocab.unk_index, vocab.eos_index, vocab.unk_word


@dataclass(frozen=True)
class EncodedBlock:
    """Token ids of consecutive sentences, concatenated, with their lengths."""

    tokens: np.ndarray  # (N,) int64
    sizes: np.ndarray  # (B,) int64
    num_replaced: int


def encode_block(text: str, lookups: Lookups) -> EncodedBlock:
    """Encodes ``text`` (lines each ending in ``\\n``), appending ``eos`` to each sentence.

    The whole block is split once, with each line end replaced by a marker word whose id is -1; the
    marker positions give the sentence sizes and become the ``eos`` ids.
    """
    if _EOL in text:  # the marker occurs in the data: go line by line
        return encode_lines(text.split("\n")[:-1], lookups.plain, eos=lookups.eos, unk_word=lookups.unk_word)
    words = text.replace("\n", f" {_EOL} ").split()
    tokens = np.fromiter(map(lookups.marked.__getitem__, words), dtype=np.int64, count=len(words))
    ends = np.flatnonzero(tokens < 0)
    sizes = np.diff(ends, prepend=-1)
    tokens[ends] = lookups.eos
    num_replaced = int(np.count_nonzero(tokens == lookups.unk)) - words.count(lookups.unk_word)
    return EncodedBlock(tokens, sizes, num_replaced)


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
) -> tuple[BinarizeSummary, FormatWriter]:
    """Encodes the lines of ``path[start:end]`` into a dataset at ``out_prefix``; returns its summary.

    With ``finalize=False`` the builder is returned open (so other chunks can be merged into it).
    """
    lookups = Lookups(vocab)
    builder = make_builder(data_file_path(out_prefix), impl, vocab_size=len(vocab))
    summary = BinarizeSummary()
    try:
        for block in iter_line_blocks(path, start, end):
            enc = encode_block(block.text, lookups)
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
        counts.update(block.text.split())
        lines += block.num_lines
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
) -> tuple[BinarizeSummary, FormatWriter]:
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
