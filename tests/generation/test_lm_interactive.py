"""``seqloom interactive --task language_modeling``: prompts continued as fairseq-interactive continues them."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixture_compare import compare_lines, read_lines

from seqloom.cli.interactive import main as interactive

HERE = Path(__file__).parents[1] / "fixtures" / "lm_interactive"


@pytest.mark.parametrize(
    ("name", "options"),
    [("beam1", ["--beam", "1", "--max-len-b", "30"]),
     ("beam3.batched", ["--beam", "3", "--nbest", "2", "--max-len-b", "20", "--buffer-size", "5", "--batch-size", "5"])],
)  # fmt: skip
def test_prompts_are_continued_like_fairseq(fairseq_fixtures: Path, capsys, name: str, options: list[str]) -> None:
    """Five prompts (one with a word the dictionary lacks), one at a time or batched (shorter prompts padded):
    the S/H/D/P lines equal fairseq-interactive's; hypotheses start with their prompt."""
    lm = fairseq_fixtures / "lm"
    argv = [str(lm / "data-bin"), "--task", "language_modeling", "--path", str(lm / "checkpoints" / "checkpoint_best.pt"),
            "--input", str(HERE / "input.txt"), *options]  # fmt: skip
    assert interactive(argv) == 0
    got = capsys.readouterr().out.splitlines()
    assert compare_lines(read_lines(HERE / f"{name}.txt"), got, skip=("W-",)) == []
    sources = {line.split("\t")[0][2:]: line.split("\t")[1] for line in got if line.startswith("S-")}
    assert all(line.split("\t")[2].startswith(sources[line.split("\t")[0][2:]]) for line in got if line[:2] == "H-")


def test_tasks_without_raw_inputs_and_generate_of_a_language_model_are_named(fairseq_fixtures: Path, capsys,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    """interactive with BART's denoising task, and generate with a language-modeling task, fail with one line
    naming what to use instead (fairseq raises NotImplementedError, or generates empty hypotheses)."""
    from seqloom.cli.generate import main as generate

    bart, lm = fairseq_fixtures / "bart", fairseq_fixtures / "lm"
    source = tmp_path / "input.txt"
    source.write_text("hello world\n", encoding="utf-8")
    argv = [str(bart / "data-bin"), "--task", "denoising", "--path", str(bart / "model" / "model.pt"),
            "--input", str(source)]  # fmt: skip
    assert interactive(argv) == 1
    assert "DenoisingTask cannot generate from raw input lines" in capsys.readouterr().err
    argv = [
        str(lm / "data-bin"),
        "--task",
        "language_modeling",
        "--path",
        str(lm / "checkpoints" / "checkpoint_best.pt"),
    ]
    assert generate(argv) == 1
    assert "--task language_modeling: seqloom generate translates binarized sentence pairs" in capsys.readouterr().err


def test_language_model_continuations_meet_lexical_constraints(fairseq_fixtures: Path, capsys, tmp_path: Path) -> None:
    """fairseq refuses --constraints with the language_modeling task; here each continuation contains its
    tab-separated phrases, in order."""
    lm = fairseq_fixtures / "lm"
    source = tmp_path / "input.txt"
    source.write_text("In the beginning\tearth\nAnd God said\tland\tthe sea\n", encoding="utf-8")
    argv = [str(lm / "data-bin"), "--task", "language_modeling", "--path", str(lm / "checkpoints" / "checkpoint_best.pt"),
            "--input", str(source), "--constraints", "--beam", "3", "--max-len-b", "40"]  # fmt: skip
    assert interactive(argv) == 0
    out = capsys.readouterr().out.splitlines()
    hyps = {line.split("\t")[0][2:]: line.split("\t")[2] for line in out if line.startswith("H-")}
    assert [line for line in out if line.startswith("C-")] == ["C-0\tearth", "C-1\tland", "C-1\tthe sea"]
    assert " earth" in hyps["0"]
    assert " land " in hyps["1"] and hyps["1"].index(" land ") < hyps["1"].rindex("the sea")
