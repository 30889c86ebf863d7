"""A UTF-8 byte-order mark at the start of a text file is left out (and said once), wherever text is read:
preprocess (dictionary and binarized data), dict.txt, interactive input, score's files, raw datasets."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from seqloom.cli import preprocess, score
from seqloom.cli.interactive import buffered_read
from seqloom.data.dictionary import Dictionary
from seqloom.data.formats import make_dataset
from seqloom.data.line_reader import iter_lines

BOM = "\ufeff".encode()
TEXT = "God said hello\nhello God\nsaid\n"


def test_preprocess_leaves_the_bom_out_of_the_dictionary_and_the_data(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The dictionary and data of a file with a BOM equal those of the same file without one (fairseq's
    dictionary would hold ``\\ufeffGod`` as a word of its own)."""
    outs = {}
    for name, prefix in (("bom", BOM), ("plain", b"")):
        (tmp_path / f"{name}.txt").write_bytes(prefix + TEXT.encode())
        dest = tmp_path / f"{name}-bin"
        argv = ["--only-source", "--source-lang", "txt", "--trainpref", str(tmp_path / name)]
        assert preprocess.main([*argv, "--destdir", str(dest), "--workers", "1"]) == 0
        logged = [line for line in capfd.readouterr().err.splitlines() if "byte-order mark" in line]
        outs[name] = (dest, logged)
    (bom_dir, logged), (plain_dir, none) = outs["bom"], outs["plain"]
    words = (bom_dir / "dict.txt.txt").read_text(encoding="utf-8")
    assert words == (plain_dir / "dict.txt.txt").read_text(encoding="utf-8") and "\ufeff" not in words
    a, b = (make_dataset(str(d / "train.txt-None.txt"), "mmap") for d in (bom_dir, plain_dir))
    assert [a[i].tolist() for i in range(len(a))] == [b[i].tolist() for i in range(len(b))]
    assert len(logged) == 1 and not none  # said once, though the file is read twice (counting, binarizing)
    assert str(tmp_path / "bom.txt") in logged[0] and "fairseq keeps it" in logged[0]


def test_line_reader_and_dict_txt(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(BOM + TEXT.encode())
    assert list(iter_lines(str(path)))[0] == "God said hello"
    dict_txt = tmp_path / "dict.txt"
    dict_txt.write_bytes(BOM + b"God 3\nhello 2\n")
    d = Dictionary.load(dict_txt)
    assert d.index("God") == d.nspecial and "\ufeffGod" not in d.indices


def test_interactive_input_and_score_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO("\ufeffGod said\nhello\n")
    assert list(buffered_read(stream, 10, "input.txt")) == [["God said", "hello"]]
    ref, hyp = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    ref.write_bytes(BOM + b"God said hello there\n")
    hyp.write_bytes(b"God said hello there\n")
    assert score.main(["--sys", str(hyp), "--ref", str(ref)]) == 0
    assert "BLEU4 = 100.00" in capsys.readouterr().out
