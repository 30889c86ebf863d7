"""``seqloom preprocess`` against fairseq-preprocess's real outputs: every file byte for byte, log statistics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqloom.cli.preprocess import main

EXTRA = Path(__file__).parents[1] / "data" / "fixtures" / "fairseq_extra"
MT = ["--source-lang", "en", "--target-lang", "es"]
SPLITS = ["--trainpref", "mt/text/train.bpe", "--validpref", "mt/text/valid.bpe", "--testpref", "mt/text/test.bpe"]

# fixture folder -> the arguments of its fairseq-preprocess command (commands.txt), minus --destdir
FIXTURE_COMMANDS = {
    "mt/data-bin": [*MT, *SPLITS, "--joined-dictionary", "--workers", "1"],
    "mt/data-bin-separate": [
        *MT, "--trainpref", "mt/text/train.bpe", "--validpref", "mt/text/valid.bpe,mt/text/test.bpe",
        "--testpref", "mt/text/test.bpe", "--thresholdsrc", "2", "--nwordstgt", "1500", "--padding-factor", "8",
        "--dataset-impl", "mmap", "--workers", "1",
    ],
    "mt/data-bin-raw": [*MT, *SPLITS, "--joined-dictionary", "--dataset-impl", "raw", "--workers", "1"],
    "mt/dict-only": [
        *MT, "--trainpref", "mt/text/train.bpe", "--dict-only", "--nwordssrc", "700", "--thresholdtgt", "3",
        "--nwordstgt", "1000", "--padding-factor", "8", "--workers", "1",
    ],
    "lm/data-bin": [
        "--only-source", "--trainpref", "mt/text/train.bpe.en", "--validpref", "mt/text/valid.bpe.en",
        "--testpref", "mt/text/test.bpe.en", "--workers", "1",
    ],
    "bart/data-bin": [
        "--only-source", "--trainpref", "bart/text/train.bpe", "--validpref", "bart/text/valid.bpe",
        "--testpref", "bart/text/test.bpe", "--workers", "1",
    ],
}  # fmt: skip


def _stat_lines(log: Path, destdir: str) -> list[str]:
    """preprocess.log without its first line (fairseq's Namespace dump / our config), destdir normalized."""
    lines = log.read_text(encoding="utf-8").splitlines()[1:]
    wrote = f"Wrote preprocessed data to {destdir}"
    return ["Wrote preprocessed data to DEST" if line == wrote else line for line in lines]


def _assert_same_outputs(expected_dir: Path, out: Path, expected_dest: str) -> None:
    expected = sorted(p.name for p in expected_dir.iterdir() if p.name != "README.md")
    assert sorted(os.listdir(out)) == expected
    for name in expected:
        if name == "preprocess.log":
            assert _stat_lines(out / name, str(out)) == _stat_lines(expected_dir / name, expected_dest), name
        else:
            assert (out / name).read_bytes() == (expected_dir / name).read_bytes(), name


@pytest.mark.parametrize("fixture", sorted(FIXTURE_COMMANDS))
def test_outputs_byte_identical_to_fairseq(fixture: str, fairseq_fixtures: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(fairseq_fixtures)  # the commands (and the logged paths) are relative to the fixture root
    out = tmp_path / "out"
    assert main([*FIXTURE_COMMANDS[fixture], "--destdir", str(out), "--no-progress-bar"]) == 0
    _assert_same_outputs(fairseq_fixtures / fixture, out, fixture)


def test_workers_give_identical_outputs(fairseq_fixtures: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(fairseq_fixtures)
    out = tmp_path / "w3"
    args = [*FIXTURE_COMMANDS["mt/data-bin-separate"][:-2], "--workers", "3", "--destdir", str(out)]
    assert main(args) == 0
    _assert_same_outputs(fairseq_fixtures / "mt/data-bin-separate", out, "mt/data-bin-separate")


@pytest.mark.parametrize(
    ("folder", "args"),
    [
        (
            "lazy",
            ["--trainpref", "in/train", "--validpref", "in/valid", "--dataset-impl", "lazy", "--align-suffix", "align"],
        ),
        ("edge", ["--trainpref", "in/edge"]),
    ],
)
def test_legacy_format_alignments_and_edge_cases(folder: str, args: list[str], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(EXTRA)
    out = tmp_path / folder
    assert main([*MT, *args, "--destdir", str(out)]) == 0
    _assert_same_outputs(EXTRA / folder, out, folder)


def test_mmap_alignments_with_two_workers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(EXTRA)
    out = tmp_path / "a"
    args = [*MT, "--trainpref", "in/train", "--align-suffix", "align", "--workers", "2", "--destdir", str(out)]
    assert main(args) == 0
    for ext in ("bin", "idx"):
        name = f"train.align.en-es.{ext}"
        assert (out / name).read_bytes() == (EXTRA / "mmapalign" / name).read_bytes()


def _parallel_files(tmp_path: Path, src: str, tgt: str) -> str:
    (tmp_path / "c.en").write_bytes(src.encode("utf-8") if isinstance(src, str) else src)
    (tmp_path / "c.de").write_bytes(tgt.encode("utf-8") if isinstance(tgt, str) else tgt)
    return str(tmp_path / "c")


def test_unequal_parallel_files_leave_nothing(tmp_path: Path, capsys) -> None:
    pref = _parallel_files(tmp_path, "a b\nc\n", "x\n")
    dest = tmp_path / "dest"
    assert main(["-s", "en", "-t", "de", "--trainpref", pref, "--destdir", str(dest)]) == 1
    err = capsys.readouterr().err
    assert f"{pref}.en has 2 lines" in err and f"{pref}.de has 1" in err
    assert not dest.exists()


def test_failure_midway_keeps_existing_destdir_untouched(tmp_path: Path, capsys) -> None:
    good = _parallel_files(tmp_path, "a b\nc\n", "x\ny\n")
    (tmp_path / "bad.en").write_bytes(b"ok\n\xff broken\n")
    (tmp_path / "bad.de").write_bytes(b"ok\nfine\n")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    args = ["-s", "en", "-t", "de", "--trainpref", good, "--validpref", str(tmp_path / "bad"), "--destdir", str(dest)]
    assert main(args) == 1  # train is binarized first, then valid fails
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.en'}:2:" in err and "UTF-8" in err
    assert sorted(os.listdir(dest)) == ["keep.txt"]


def test_a_destdir_below_a_file_is_named(tmp_path: Path, capsys) -> None:
    pref = _parallel_files(tmp_path, "a\n", "b\n")
    (tmp_path / "taken").write_text("a file")
    dest = tmp_path / "taken" / "data-bin"
    assert main(["-s", "en", "-t", "de", "--trainpref", pref, "--destdir", str(dest)]) == 1
    err = capsys.readouterr().err
    assert f"--destdir {dest}: cannot write there ({tmp_path / 'taken'} is a file, not a folder)" in err


def test_empty_lines_are_empty_sentences(tmp_path: Path) -> None:
    from seqloom.data.indexed_dataset import MMapIndexedDataset

    pref = _parallel_files(tmp_path, "a\n\nb a\n", "x\ny\n\n")
    dest = tmp_path / "d"
    assert main(["-s", "en", "-t", "de", "--trainpref", pref, "--destdir", str(dest)]) == 0
    en = MMapIndexedDataset(dest / "train.en-de.en")
    assert en.sizes.tolist() == [2, 1, 3] and en[1].tolist() == [2]
    assert "[de] " + pref + ".de: 3 sents, 5 tokens, 0.0% replaced (by <unk>)" in (dest / "preprocess.log").read_text()


def test_existing_dictionary_is_refused_with_a_fix(tmp_path: Path, capsys) -> None:
    pref = _parallel_files(tmp_path, "a\n", "b\n")
    dest = tmp_path / "d"
    args = ["-s", "en", "-t", "de", "--trainpref", pref, "--destdir", str(dest)]
    assert main(args) == 0
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "dict.en.txt already exists" in err and "--srcdict" in err
    srcdict = str(dest / "dict.en.txt")
    assert main([*args, "--srcdict", srcdict, "--tgtdict", str(dest / "dict.de.txt")]) == 0
    assert (dest / "preprocess.log").read_text().count("Wrote preprocessed data") == 2  # appended, as fairseq


def test_missing_input_names_flag(tmp_path: Path, capsys) -> None:
    assert main(["-s", "en", "-t", "de", "--trainpref", str(tmp_path / "none"), "--destdir", str(tmp_path / "d")]) == 1
    assert "--trainpref" in capsys.readouterr().err


def test_help_lists_fairseq_flags(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--trainpref", "--joined-dictionary", "--nwordssrc", "--padding-factor", "--dataset-impl", "-s"):
        assert flag in out


def test_unknown_flag_suggests(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--trainprefix", "x"])
    assert "did you mean --trainpref" in capsys.readouterr().err


def test_yaml_config(tmp_path: Path) -> None:
    pref = _parallel_files(tmp_path, "a a b\n", "c\n")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"source-lang: en\ntarget-lang: de\ntrainpref: {pref}\npadding-factor: 1\n")
    assert main(["--config", str(cfg), "--destdir", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d/dict.en.txt").read_text() == "a 2\nb 1\n"


def _span_job(start: int, end: int, index: int, progress) -> tuple[int, int]:
    progress(end - start)
    return start, end


def test_progress_bar_on_stderr(tmp_path: Path, capsys) -> None:
    from seqloom.data.parallel import ChunkRunner

    pref = _parallel_files(tmp_path, "a\n" * 100, "b\n" * 100)
    with ChunkRunner(2, progress_bar=True) as runner:
        results = runner.run(f"{pref}.en", _span_job, desc="demo")
    assert results[0][0] == 0 and results[-1][1] == 200
    assert "demo" in capsys.readouterr().err


def test_command_dispatch_and_no_torch_import(tmp_path: Path) -> None:
    pref = _parallel_files(tmp_path, "a\n", "b\n")
    code = (
        "import sys; from seqloom.cli.main import main; "
        f"rc = main(['preprocess', '-s', 'en', '-t', 'de', '--trainpref', {pref!r}, '--destdir', {str(tmp_path / 'd')!r}]); "
        "assert rc == 0, rc; assert 'torch' not in sys.modules, 'preprocess imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert (tmp_path / "d/train.en-de.de.idx").exists()


def test_alignfile_writes_most_frequent_target_per_source_word(tmp_path: Path, capsys) -> None:
    pref = _parallel_files(tmp_path, "a b\na c\nb\n", "x y\nx z\nw\n")
    (tmp_path / "al").write_text("0-0 1-1\n0-0 1-0\n0-0\n")
    dest = tmp_path / "d"
    assert (
        main(["-s", "en", "-t", "de", "--trainpref", pref, "--alignfile", str(tmp_path / "al"), "--destdir", str(dest)])
        == 0
    )
    assert (dest / "alignment.en-de.txt").read_text() == "a x\nb y\nc x\n"
    (tmp_path / "al").write_text("0-0 5-1\n0-0\n0-0\n")
    args = [
        "-s",
        "en",
        "-t",
        "de",
        "--trainpref",
        pref,
        "--alignfile",
        str(tmp_path / "al"),
        "--destdir",
        str(tmp_path / "e"),
    ]
    assert main(args) == 1
    assert f"{tmp_path / 'al'}:1:" in capsys.readouterr().err
