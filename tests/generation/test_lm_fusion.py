"""Shallow fusion with a language model (``--lm-path``/``--lm-weight``) against fairseq-generate's output."""

from __future__ import annotations

from pathlib import Path

from fixture_compare import compare_lines, read_lines

from seqloom.cli.generate import main as generate

HERE = Path(__file__).parents[1] / "fixtures" / "lm_fusion"


def run(fixtures, capsys, *options: str) -> tuple[int, list[str], str]:
    mt = fixtures / "mt"
    argv = [str(mt / "data-bin"), "--path", str(mt / "checkpoints" / "checkpoint_best.pt"), "--gen-subset", "test",
            "--no-progress-bar", "--batch-size", "32", "--beam", "5", "--num-shards", "8", "--shard-id", "1",
            *options]  # fmt: skip
    status = generate(argv)
    captured = capsys.readouterr()
    return status, [line for line in captured.out.splitlines() if line[1:2] == "-"], captured.err


def test_fusion_matches_fairseq(fairseq_fixtures, capsys) -> None:
    """fairseq's tiny language model over the target dictionary (a model with project_in/out_dim), weight
    0.3: the shard's lines equal fairseq's (scores within 1e-4); weight 0 gives plain beam search."""
    status, got, _ = run(fairseq_fixtures, capsys, "--lm-path", str(HERE / "lm.pt"), "--lm-weight", "0.3")
    assert status == 0
    ids = {line.split("\t")[0][2:] for line in got if line.startswith("S-")}
    assert len(ids) >= 8
    expected = [line for line in read_lines(HERE / "generate.beam5.lm0.3.txt.gz") if line.split("\t")[0][2:] in ids]
    assert compare_lines(expected, got) == []
    plain = run(fairseq_fixtures, capsys)[1]
    assert plain != got
    assert run(fairseq_fixtures, capsys, "--lm-path", str(HERE / "lm.pt"))[1] == plain


def test_language_model_must_share_the_target_vocabulary(fairseq_fixtures, capsys) -> None:
    lm = fairseq_fixtures / "lm" / "checkpoints" / "checkpoint_best.pt"
    status, _, err = run(fairseq_fixtures, capsys, "--lm-path", str(lm))
    assert status == 1
    assert f"--lm-path {lm}: the language model has" in err and "but the target dictionary has 2056" in err
    mt = fairseq_fixtures / "mt" / "checkpoints" / "checkpoint_best.pt"
    status, _, err = run(fairseq_fixtures, capsys, "--lm-path", str(mt))
    assert status == 1 and "holds a 'transformer' model; shallow fusion needs a language model" in err
    status, _, err = run(fairseq_fixtures, capsys, "--lm-path", "missing.pt")
    assert status == 1 and "--lm-path missing.pt: no such checkpoint file" in err

    status, _, err = run(fairseq_fixtures, capsys, "--lm-path", str(HERE / "lm.pt"), "--score-reference")
    assert status == 1 and "--score-reference scores with the translation models alone" in err
