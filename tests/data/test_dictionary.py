"""Dictionary: fairseq's dict.txt format, finalize's ordering, encode_line / string."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
import torch

from seqloom.data.dictionary import Dictionary, DictionaryFormatError
from seqloom.data.text import post_process, tokenize_line


def test_load_fixture_dict_and_save_byte_identical(fairseq_fixtures: Path, tmp_path: Path) -> None:
    src = fairseq_fixtures / "mt/data-bin/dict.en.txt"
    d = Dictionary.load(src)
    assert len(d) == 2056  # preprocess.log: "[en] Dictionary: 2056 types"
    assert (d.bos(), d.pad(), d.eos(), d.unk()) == (0, 1, 2, 3)
    assert [d[i] for i in range(4)] == ["<s>", "<pad>", "</s>", "<unk>"]
    first = src.read_text(encoding="utf-8").splitlines()[0].rsplit(" ", 1)[0]
    assert d.index(first) == 4
    assert d.index("no-such-symbol") == d.unk()
    assert d[10**6] == "<unk>"
    d.save(tmp_path / "dict.txt")
    assert (tmp_path / "dict.txt").read_bytes() == src.read_bytes()


def test_finalize_reproduces_fairseq_joined_dictionary(fairseq_fixtures: Path) -> None:
    counts: Counter[str] = Counter()
    for lang in ("en", "es"):
        text = (fairseq_fixtures / f"mt/text/train.bpe.{lang}").read_text(encoding="utf-8")
        counts.update(text.split())
    d = Dictionary()
    d.add_counts(counts)
    d.finalize(threshold=0, nwords=-1, padding_factor=8)
    out = io.StringIO()
    d.save(out)
    assert out.getvalue() == (fairseq_fixtures / "mt/data-bin/dict.en.txt").read_text(encoding="utf-8")


def test_finalize_threshold_and_nwords_match_fairseq_dict_only(fairseq_fixtures: Path) -> None:
    # mt/dict-only: --nwordssrc 700 (source) and --thresholdtgt 3 --nwordstgt 1000 (target)
    for lang, kwargs in (("en", {"nwords": 700}), ("es", {"threshold": 3, "nwords": 1000})):
        d = Dictionary()
        d.add_counts(Counter((fairseq_fixtures / f"mt/text/train.bpe.{lang}").read_text(encoding="utf-8").split()))
        d.finalize(padding_factor=8, **kwargs)
        out = io.StringIO()
        d.save(out)
        assert out.getvalue() == (fairseq_fixtures / f"mt/dict-only/dict.{lang}.txt").read_text(encoding="utf-8")


def test_finalize_order_ties_by_symbol_and_padding() -> None:
    d = Dictionary()
    for word, n in [("b", 2), ("a", 2), ("c", 5), ("Z", 2), ("rare", 1)]:
        d.add_symbol(word, n)
    d.finalize(threshold=2, padding_factor=4)
    assert d.symbols == ["<s>", "<pad>", "</s>", "<unk>", "c", "Z", "a", "b"]
    d2 = Dictionary()
    for word, n in [("x", 3), ("y", 1)]:
        d2.add_symbol(word, n)
    d2.finalize(padding_factor=8)
    assert d2.symbols[6:] == ["madeupword0000", "madeupword0001"] and len(d2) == 8
    assert d2.count[6:] == [0, 0]
    d3 = Dictionary()
    d3.add_symbol("w", 9)
    d3.finalize(nwords=2, padding_factor=1)  # nwords below the specials: none kept
    assert len(d3) == 4


def test_overwrite_flag_and_symbols_with_spaces(tmp_path: Path) -> None:
    p = tmp_path / "dict.txt"
    p.write_text("hello 5\nhello 7 #fairseq:overwrite\nsym bol 3\n", encoding="utf-8")
    d = Dictionary.load(p)
    assert d.index("hello") == 5 and d.count[5] == 7
    assert d.index("sym bol") == 6
    p.write_text("b 4\na 5\na 2 #fairseq:overwrite\n", encoding="utf-8")
    d = Dictionary.load(p)
    d.finalize(padding_factor=1)  # fairseq sorts (symbol, count) pairs: the larger count of a repeated symbol wins
    assert d.symbols[4:] == ["a", "b"] and d.count[4:] == [5, 4]


@pytest.mark.parametrize(
    ("text", "lineno", "what"),
    [
        ("a 1\nnocount\n", 2, "expected '<symbol> <count>"),
        ("a 1\nb x\n", 2, "'b x'"),
        ("a 1\n\n", 2, "expected"),
        ("a 1\nb 2\na 3\n", 3, "duplicate symbol 'a'"),
    ],
)
def test_bad_dict_lines_name_file_and_line(tmp_path: Path, text: str, lineno: int, what: str) -> None:
    p = tmp_path / "dict.en.txt"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(DictionaryFormatError) as err:
        Dictionary.load(p)
    assert f"{p}:{lineno}:" in str(err.value) and what in str(err.value)
    assert isinstance(err.value, ValueError)


def test_duplicate_hint_mentions_overwrite_flag(tmp_path: Path) -> None:
    p = tmp_path / "d.txt"
    p.write_text("a 1\na 2\n", encoding="utf-8")
    with pytest.raises(DictionaryFormatError, match="#fairseq:overwrite"):
        Dictionary.load(p)


def test_invalid_utf8_dictionary_is_named(tmp_path: Path) -> None:
    p = tmp_path / "d.txt"
    p.write_bytes(b"a 1\n\xff\xfe 2\n")
    with pytest.raises(DictionaryFormatError, match="not valid UTF-8"):
        Dictionary.load(p)


def test_encode_line_matches_fairseq_binarized_item(fairseq_fixtures: Path) -> None:
    from seqloom.data.indexed_dataset import MMapIndexedDataset

    d = Dictionary.load(fairseq_fixtures / "mt/data-bin/dict.en.txt")
    line = (fairseq_fixtures / "mt/text/valid.bpe.en").read_text(encoding="utf-8").splitlines()[3]
    ids = d.encode_line(line)
    assert ids.dtype == torch.int32 and int(ids[-1]) == d.eos()
    ds = MMapIndexedDataset(fairseq_fixtures / "mt/data-bin/valid.en-es.en")
    assert torch.equal(ids.long(), ds[3])
    assert d.string(ds[3]) == " ".join(line.split())


def test_encode_line_unknowns_and_options() -> None:
    d = Dictionary()
    for w in ("the", "cat"):
        d.add_symbol(w)
    assert d.encode_line("the  dog\tcat").tolist() == [4, 3, 5, 2]
    assert d.encode_line("the cat", append_eos=False, reverse_order=True).tolist() == [5, 4]
    seen: list[tuple[str, int]] = []
    d.encode_line("dog", consumer=lambda w, i: seen.append((w, i)))
    assert seen == [("dog", 3)]
    assert d.encode_line("dog", add_if_not_exist=True).tolist() == [6, 2] and "dog" in d
    assert d.encode_line("").tolist() == [2]  # an empty line is an empty sentence


def test_string_removes_bpe_and_special_symbols() -> None:
    d = Dictionary()
    ids = [d.add_symbol(w) for w in ("hel@@", "lo", "wor@@", "ld")]
    t = torch.tensor([d.bos()] + ids + [d.unk(), d.eos()])
    assert d.string(t) == "hel@@ lo wor@@ ld <unk>"
    assert d.string(t, "@@ ") == "hello world <unk>"
    assert d.string(t, "subword_nmt", escape_unk=True) == "hello world <<unk>>"
    assert d.string(t, include_eos=True, unk_string="UNK").endswith("UNK </s>")
    assert d.string(torch.stack([t, t])).count("\n") == 1
    assert d.string(t, extra_symbols_to_ignore=[ids[0]]) == "lo wor@@ ld <unk>"


def test_post_process_variants() -> None:
    assert post_process("\u2581Hel lo \u2581world", "sentencepiece") == "Hello world"
    assert post_process("a@@ b c", "@@ ") == "ab c"
    assert post_process("a@@ b@@", "@@") == "a b"
    assert post_process("_un for tun ate", "wordpiece") == "unfortunate"
    assert post_process("h i | t h e r e", "letter") == "hi there"
    assert post_process("a <SIL>  b", "silence") == "a b"
    assert post_process("x y", None) == post_process("x y", "none") == "x y"
    with pytest.raises(ValueError, match="unknown BPE"):
        post_process("x", "bogus")


def test_extra_special_symbols_shift_ids() -> None:
    d = Dictionary(extra_special_symbols=["<mask>"])
    assert d.nspecial == 5 and d.index("<mask>") == 4
    out = io.StringIO()
    d.add_symbol("w", 3)
    d.save(out)
    assert out.getvalue() == "w 3\n"


def test_tokenize_line_is_fairseqs_whitespace_split() -> None:
    assert tokenize_line("  a\u00a0b\u2028c\t d \n") == ["a", "b", "c", "d"]
