"""Seeded sampling and --retain-dropout draw fairseq's random numbers: the hypotheses equal fairseq-generate's
(tests/fixtures/sampling). The models are then built with their random initialisation, as fairseq builds them,
since the draws that follow depend on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixture_compare import compare_lines, read_lines

from seqloom.cli.generate import main as generate

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "sampling"


@pytest.mark.parametrize(
    ("name", "options"),
    [
        (
            "sampling.topk20.seed7",
            ("--sampling", "--sampling-topk", "20", "--beam", "2", "--nbest", "2", "--seed", "7"),
        ),
        ("retain-dropout.seed3", ("--retain-dropout", "--beam", "2", "--seed", "3")),
    ],
)
def test_seeded_draws_equal_fairseqs(name: str, options: tuple[str, ...], fairseq_fixtures: Path, capsys) -> None:
    mt = fairseq_fixtures / "mt"
    argv = [str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--gen-subset", "test",
            "--batch-size", "16", "--max-len-a", "0", "--max-len-b", "12", "--no-progress-bar", *options]  # fmt: skip
    assert generate(argv) == 0
    got = [line for line in capsys.readouterr().out.splitlines() if line.startswith("H-")]
    assert compare_lines(read_lines(HERE / f"{name}.txt.gz"), got) == []
