"""Line splitting identical to fairseq's text-mode readline, chunking at line starts, encoding in blocks."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from seqloom.data.binarizer import (
    BinarizeSummary,
    Lookups,
    _Lookup,
    count_words_chunk,
    encode_block,
    encode_lines,
    parse_alignment,
)
from seqloom.data.dictionary import Dictionary
from seqloom.data.line_reader import (
    InputFormatError,
    check_parallel,
    count_lines,
    find_offsets,
    iter_line_blocks,
    iter_lines,
    line_number_at,
)


def _readline_lines(path: Path) -> list[str]:
    """What fairseq sees: text-mode readline (universal newlines), line end removed."""
    out = []
    with open(path, encoding="utf-8") as f:
        while line := f.readline():
            out.append(line.rstrip("\n"))
    return out


def test_lines_blocks_and_chunks_agree_with_text_mode_readline(tmp_path: Path) -> None:
    rng = random.Random(0)
    pieces = ["a", "bc", " ", "\n", "\r", "\r\n", "é", "\u2028", "\t", "\n\n"]
    path = tmp_path / "f.txt"
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        path.write_bytes(text.encode("utf-8"))
        expected = _readline_lines(path)
        block_size = rng.choice([1, 2, 3, 7, 1 << 20])
        assert [ln for b in iter_line_blocks(str(path), block_size=block_size) for ln in b.lines] == expected, text
        assert count_lines(str(path)) == len(expected), text
        offsets = find_offsets(str(path), rng.randint(1, 4))
        chunked = [
            ln
            for a, b in zip(offsets, offsets[1:])
            for blk in iter_line_blocks(str(path), a, b, block_size=block_size)
            for ln in blk.lines
        ]
        assert chunked == expected, (text, offsets)


def test_find_offsets_are_line_starts(fairseq_fixtures: Path) -> None:
    path = str(fairseq_fixtures / "mt/text/train.bpe.en")
    offsets = find_offsets(path, 4)
    data = Path(path).read_bytes()
    assert offsets[0] == 0 and offsets[-1] == len(data) and offsets == sorted(offsets)
    assert all(data[o - 1 : o] == b"\n" for o in offsets[1:-1])


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.en"
    path.write_bytes(b"fine\nalso fine\r\nthird \xe9t\xe9\nfourth\n")
    with pytest.raises(InputFormatError) as err:
        list(iter_lines(str(path)))
    assert f"{path}:3:" in str(err.value) and "UTF-8" in str(err.value)
    assert line_number_at(str(path), 0) == 1


def test_check_parallel_names_both_files(tmp_path: Path) -> None:
    a, b = tmp_path / "x.en", tmp_path / "x.de"
    a.write_text("1\n2\n3\n")
    b.write_text("1\n2")
    with pytest.raises(InputFormatError) as err:
        check_parallel((str(a), str(b)))
    assert f"{a} has 3 lines" in str(err.value) and f"{b} has 2" in str(err.value)


def test_encode_lines_equals_encode_line_and_counts_replacements() -> None:
    d = Dictionary()
    for w in "the cat sat on mat".split():
        d.add_symbol(w)
    lines = ["the cat  sat", "", "a dog on the mat", "<unk> cat", "   "]
    enc = encode_lines(lines, _Lookup(d.indices, d.unk()), eos=d.eos(), unk_word=d.unk_word)
    expected = [d.encode_line(line).tolist() for line in lines]
    assert enc.sizes.tolist() == [len(e) for e in expected]
    assert enc.tokens.tolist() == [i for e in expected for i in e]
    assert enc.num_replaced == 2  # "a" and "dog"; a literal <unk> is not a replacement
    bare = encode_lines(lines, _Lookup(d.indices, d.unk()), eos=d.eos(), unk_word=d.unk_word, append_eos=False)
    assert bare.sizes.tolist() == [len(e) - 1 for e in expected]


@pytest.mark.parametrize("text", ["the cat\n\nsat on a\tmat\n  \n", "x \x00 the\n\x00\n", ""])
def test_encode_block_equals_line_by_line(text: str) -> None:
    d = Dictionary()
    for w in ["the", "cat", "\x00"]:
        d.add_symbol(w)
    block = encode_block(text, Lookups(d))
    lines = encode_lines(text.split("\n")[:-1], _Lookup(d.indices, d.unk()), eos=d.eos(), unk_word=d.unk_word)
    assert block.tokens.tolist() == lines.tokens.tolist() and block.sizes.tolist() == lines.sizes.tolist()
    assert block.num_replaced == lines.num_replaced
    if "\x00" in text:
        assert d.index("\x00") in block.tokens.tolist()


def test_count_words_chunk(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("a b a\n\nb c\n", encoding="utf-8")
    counts = count_words_chunk(str(path), 0, path.stat().st_size, "</s>")
    assert counts == {"a": 2, "b": 2, "c": 1, "</s>": 3}


def test_summary_prints_like_fairseq() -> None:
    assert str(BinarizeSummary(3000, 112656, 0)) == "3000 sents, 112656 tokens, 0.0% replaced"
    assert str(BinarizeSummary(200, 7494, 240)) == "200 sents, 7494 tokens, 3.2% replaced"
    assert str(BinarizeSummary(1, 3, 1)) == "1 sents, 3 tokens, 33.3% replaced"
    assert str(BinarizeSummary()) == "0 sents, 0 tokens"  # fairseq prints no percentage for an empty file
    s = BinarizeSummary(1, 10, 1)
    s.merge(BinarizeSummary(2, 10, None))
    assert (s.num_seq, s.num_tok, s.num_replaced) == (3, 20, 1)


def test_parse_alignment() -> None:
    assert parse_alignment("0-1 2-3\n").tolist() == [0, 1, 2, 3]
    assert parse_alignment("").dtype == np.int64
    with pytest.raises(ValueError, match="'0:1'"):
        parse_alignment("0:1")
