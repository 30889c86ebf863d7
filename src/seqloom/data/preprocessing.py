"""The steps of ``seqloom preprocess``: build dictionaries, binarize files, publish the outputs atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from itertools import zip_longest
from pathlib import Path
from types import TracebackType
from typing import Any

from seqloom.data.binarizer import (
    BinarizeSummary,
    binarize_alignment_chunk,
    binarize_chunk,
    count_words_chunk,
    parse_alignment,
    remove_dataset,
)
from seqloom.data.dictionary import Dictionary
from seqloom.data.indexed_dataset import index_file_path
from seqloom.data.line_reader import InputFormatError, iter_lines
from seqloom.data.parallel import ChunkRunner
from seqloom.paths import unwritable_reason


def require_file(path: str, flag: str) -> None:
    """Raises ``InputFormatError`` naming ``flag`` when the input file ``path`` is missing."""
    if not os.path.isfile(path):
        raise InputFormatError(f"{flag}: input file {path} not found")


def build_dictionary(
    paths: Iterable[str], runner: ChunkRunner, *, threshold: int, nwords: int, padding_factor: int
) -> Dictionary:
    """Counts the words of ``paths`` and finalizes a dictionary from them (fairseq's ``build_dictionary``)."""
    d = Dictionary()
    counts: Counter[str] = Counter()
    for path in paths:
        job = partial(_count_job, path, d.eos_word)
        for chunk_counts in runner.run(path, job, desc=f"count {os.path.basename(path)}"):
            counts.update(chunk_counts)
    d.add_counts(counts)  # once for all files: finalize's order depends only on the totals
    d.finalize(threshold=threshold, nwords=nwords, padding_factor=padding_factor)
    return d


def _count_job(
    path: str, eos_word: str, start: int, end: int, index: int, progress: Callable[[int], None]
) -> Counter[str]:
    return count_words_chunk(path, start, end, eos_word, progress)


def binarize_file(
    runner: ChunkRunner, path: str, out_prefix: str, *, impl: str, vocab: Dictionary | None
) -> BinarizeSummary:
    """Binarizes ``path`` into ``{out_prefix}.bin/.idx`` (``vocab=None``: an alignment file)."""
    job = partial(_binarize_job, path, out_prefix, impl, vocab)
    results = runner.run(path, job, desc=os.path.basename(out_prefix))
    (summary, builder), rest = results[0], results[1:]
    try:
        for k, worker_summary in enumerate(rest, start=1):
            summary.merge(worker_summary)
            builder.merge_file_(_worker_prefix(out_prefix, k))
            remove_dataset(_worker_prefix(out_prefix, k))
        builder.finalize(index_file_path(out_prefix))
    except BaseException:
        builder.discard()
        raise
    return summary


def _worker_prefix(out_prefix: str, index: int) -> str:
    return f"{out_prefix}.pt{index}"


def _binarize_job(
    path: str,
    out_prefix: str,
    impl: str,
    vocab: Dictionary | None,
    start: int,
    end: int,
    index: int,
    progress: Callable[[int], None],
) -> Any:
    prefix = out_prefix if index == 0 else _worker_prefix(out_prefix, index)
    if vocab is None:
        summary, builder = binarize_alignment_chunk(path, start, end, prefix, impl, progress, finalize=index > 0)
    else:
        summary, builder = binarize_chunk(path, start, end, vocab, prefix, impl, progress, finalize=index > 0)
    return (summary, builder) if index == 0 else summary


def write_alignment_dictionary(
    alignfile: str, texts: tuple[str, str], dicts: tuple[Dictionary, Dictionary], out_path: str
) -> None:
    """For each source word, the target word it is most often aligned to (fairseq's ``--alignfile``).

    ``alignfile`` holds ``i-j`` pairs per line of the parallel ``texts``; pairs touching ``<unk>`` are
    skipped. Writes ``src_word tgt_word`` lines, source words in order of first appearance (ties: the
    target seen first). fairseq 0.12 means to do the same but keys its counts by tensor elements, which
    hash by identity, so it writes one line per aligned pair instead; ``load_align_dict`` reads both.
    """
    src_dict, tgt_dict = dicts
    freq: dict[int, dict[int, int]] = {}
    lines = zip_longest(iter_lines(alignfile), iter_lines(texts[0]), iter_lines(texts[1]))
    for lineno, (a, s, t) in enumerate(lines, start=1):
        if a is None or s is None or t is None:
            raise InputFormatError(f"{alignfile}, {texts[0]} and {texts[1]} differ in length (line {lineno})")
        si = [src_dict.index(w) for w in s.split()] + [src_dict.eos()]
        ti = [tgt_dict.index(w) for w in t.split()] + [tgt_dict.eos()]
        try:
            pairs = parse_alignment(a).reshape(-1, 2).tolist()
            aligned = [(si[i], ti[j]) for i, j in pairs]
        except (ValueError, IndexError) as err:
            raise InputFormatError(
                f"{alignfile}:{lineno}: {err or 'alignment index past the end of the line'}"
            ) from None
        for src_id, tgt_id in aligned:
            if src_id == src_dict.unk() or tgt_id == tgt_dict.unk():
                continue
            if src_id in (src_dict.pad(), src_dict.eos()) or tgt_id in (tgt_dict.pad(), tgt_dict.eos()):
                raise InputFormatError(f"{alignfile}:{lineno}: an alignment points at the end of the sentence")
            row = freq.setdefault(src_id, {})
            row[tgt_id] = row.get(tgt_id, 0) + 1
    with open(out_path, "w", encoding="utf-8", newline="\n") as f:
        for src_id, row in freq.items():
            f.write(f"{src_dict[src_id]} {tgt_dict[max(row, key=row.__getitem__)]}\n")


class OutputDir:
    """Writes into a hidden staging folder inside ``destdir`` and moves the files in only on success.

    On an error the staging folder is removed (and ``destdir`` too, if this created it and it is
    empty), so a failed run leaves nothing half-written. ``preprocess.log`` is appended to, as fairseq's.
    """

    LOG = "preprocess.log"

    def __init__(self, destdir: str) -> None:
        self.destdir = destdir
        self._created = not os.path.isdir(destdir)
        try:
            os.makedirs(destdir, exist_ok=True)
            self.staging = tempfile.mkdtemp(prefix=".seqloom-preprocess-", dir=destdir)
        except OSError as err:
            reason = unwritable_reason(Path(destdir, "x"), err)
            raise OSError(f"--destdir {destdir}: cannot write there ({reason})") from None

    def path(self, name: str) -> str:
        """Where to write the output ``name`` for now."""
        return os.path.join(self.staging, name)

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def commit(self) -> list[str]:
        names = sorted(n for n in os.listdir(self.staging) if not n.startswith("."))
        for name in names:
            if name == self.LOG:
                with open(os.path.join(self.destdir, name), "ab") as out, open(self.path(name), "rb") as f:
                    shutil.copyfileobj(f, out)
            else:
                os.replace(self.path(name), os.path.join(self.destdir, name))
        shutil.rmtree(self.staging, ignore_errors=True)
        return names

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._created and not any(Path(self.destdir).iterdir()):
            os.rmdir(self.destdir)
