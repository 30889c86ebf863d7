"""``seqloom eval-lm`` on fairseq's LM checkpoint reproduces fairseq-eval-lm's figures and word probabilities."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seqloom.cli import eval_lm

LOSS = re.compile(r"Loss \(base 2\): ([0-9.]+), Perplexity: ([0-9.]+)")
EVALUATED = re.compile(r"Evaluated ([0-9,]+) tokens in ")
WORDS = re.compile(r"eval_lm\s*[:|]\s*(\d+) (.*)$")


def run(capsys: pytest.CaptureFixture[str], lm_dir: Path, *extra: str) -> str:
    argv = [str(lm_dir / "data-bin"), "--cpu", "--path", str(lm_dir / "checkpoints" / "checkpoint_best.pt"),
            "--gen-subset", "test", "--tokens-per-sample", "128", "--max-tokens", "2048", *extra]  # fmt: skip
    assert eval_lm.main(argv) == 0
    return capsys.readouterr().err


def figures(text: str) -> tuple[int, float, float]:
    loss = LOSS.search(text)
    tokens = EVALUATED.search(text)
    assert loss is not None and tokens is not None, text[-2000:]
    return int(tokens.group(1).replace(",", "")), float(loss.group(1)), float(loss.group(2))


def word_lines(text: str) -> dict[int, list[tuple[str, float]]]:
    rows: dict[int, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        m = WORDS.search(line)
        if m is None or "[" not in m.group(2):
            continue
        pairs = re.findall(r"(\S+) \[(-?[0-9.]+(?:e-?\d+)?)\]", m.group(2))
        rows[int(m.group(1))] = [(w, float(p)) for w, p in pairs]
    return rows


@pytest.mark.parametrize("window, name", [("0", "eval-lm.test.cw0.txt"), ("64", "eval-lm.test.cw64.txt")])
def test_loss_and_perplexity_equal_fairseq(
    capsys: pytest.CaptureFixture[str], fairseq_fixtures: Path, window: str, name: str
) -> None:
    lm_dir = fairseq_fixtures / "lm"
    ours = figures(run(capsys, lm_dir, "--context-window", window))
    theirs = figures((lm_dir / "outputs" / name).read_text(encoding="utf-8"))
    assert ours[0] == theirs[0] == 8645
    assert ours[1] == pytest.approx(theirs[1], abs=1e-4)
    assert ours[2] == pytest.approx(theirs[2], abs=1e-2)


def test_word_probs_equal_fairseq(capsys: pytest.CaptureFixture[str], fairseq_fixtures: Path) -> None:
    lm_dir = fairseq_fixtures / "lm"
    ours = word_lines(run(capsys, lm_dir, "--output-word-probs", "--output-word-stats"))
    theirs = word_lines((lm_dir / "outputs" / "eval-lm.test.cw0.word-probs.txt").read_text(encoding="utf-8"))
    assert len(theirs) == 68 and list(ours) == list(theirs)  # same rows, in fairseq's batch order
    for sample_id, words in theirs.items():
        assert [w for w, _ in ours[sample_id]] == [w for w, _ in words]
        assert [p for _, p in ours[sample_id]] == pytest.approx([p for _, p in words], abs=1e-4)


def test_bpe_words_merge_and_softmax_batch_keeps_the_loss(
    capsys: pytest.CaptureFixture[str], fairseq_fixtures: Path
) -> None:
    lm_dir = fairseq_fixtures / "lm"
    plain = figures(run(capsys, lm_dir, "--softmax-batch", "100"))
    assert plain[1] == pytest.approx(6.2790, abs=1e-4)
    text = run(capsys, lm_dir, "--post-process", "subword_nmt", "--output-word-probs")
    merged = word_lines(text)
    assert all("@@" not in w for words in merged.values() for w, _ in words)
    assert figures(text)[1] > plain[1]  # fewer, harder units: whole words


def test_missing_checkpoint_is_named(
    capsys: pytest.CaptureFixture[str], fairseq_fixtures: Path, tmp_path: Path
) -> None:
    lm_dir = fairseq_fixtures / "lm"
    code = eval_lm.main([str(lm_dir / "data-bin"), "--cpu", "--path", str(tmp_path / "nope.pt")])
    assert code == 1
    assert "nope.pt" in capsys.readouterr().err


def test_blocks_longer_than_max_tokens_leave_nothing_and_that_is_an_error(
    capsys: pytest.CaptureFixture[str], fairseq_fixtures: Path
) -> None:
    """Every block skipped (128 tokens against --max-tokens 64): an error, not "Loss 0.0000, Perplexity 1.00"."""
    lm_dir = fairseq_fixtures / "lm"
    argv = [str(lm_dir / "data-bin"), "--cpu", "--path", str(lm_dir / "checkpoints" / "checkpoint_best.pt")]
    assert eval_lm.main([*argv, "--tokens-per-sample", "128", "--max-tokens", "64"]) == 1
    err = capsys.readouterr().err
    assert "nothing was evaluated in 'test': every one of its 68 blocks was skipped" in err
    assert "max_positions=(64, 64)" in err and "Perplexity" not in err
    assert eval_lm.main(argv) == 1  # fairseq's default --tokens-per-sample 1024 against the model's 128 positions
    err = capsys.readouterr().err
    assert "blocks was skipped as longer than the model's 128 positions: pass --tokens-per-sample 128 or less" in err
    assert "(it is 1024)" in err
    assert eval_lm.main([*argv, "--tokens-per-sample", "128", "--context-window", "128"]) == 1
    assert "--context-window 128 must be smaller than --tokens-per-sample 128" in capsys.readouterr().err
    # 68 blocks make one batch: the second of two shards gets none, which is not a matter of block lengths
    assert eval_lm.main([*argv, "--tokens-per-sample", "128", "--num-shards", "2", "--shard-id", "1"]) == 1
    err = capsys.readouterr().err
    assert "its 68 blocks make too few batches for --num-shards 2, and shard 1 got none" in err
    assert "longer than" not in err


def test_bf16_casts_the_model_and_stays_close(capsys: pytest.CaptureFixture[str], fairseq_fixtures: Path) -> None:
    lm_dir = fairseq_fixtures / "lm"
    fp32 = figures(run(capsys, lm_dir))
    bf16 = figures(run(capsys, lm_dir, "--bf16"))
    assert bf16[0] == fp32[0] and bf16[1] != fp32[1]  # same tokens; the weights really were cast
    assert bf16[1] == pytest.approx(fp32[1], abs=0.05)
