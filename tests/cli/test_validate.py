"""``seqloom validate`` on fairseq's checkpoint prints fairseq-validate's figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seqloom.cli import validate

LINE = re.compile(r"valid on '(\w+)' subset \| (.*)")


def parse_line(text: str, subset: str) -> dict[str, float]:
    for line in text.splitlines():
        m = LINE.search(line)
        if m and m.group(1) == subset:
            return {k: float(v) for k, v in (item.split(" ") for item in m.group(2).split(" | "))}
    raise AssertionError(f"no 'valid on {subset!r} subset' line in:\n{text}")


def test_validate_matches_fairseq_validate(fairseq_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mt = fairseq_fixtures / "mt"
    expected = parse_line((mt / "outputs" / "validate.valid.txt").read_text(encoding="utf-8"), "valid")
    argv = [
        str(mt / "data-bin"),
        "--cpu",
        "--task",
        "translation",
        "--path",
        str(mt / "checkpoints" / "checkpoint_best.pt"),
    ]
    argv += ["--valid-subset", "valid", "--batch-size", "32", "--num-workers", "0"]
    assert validate.main(argv) == 0
    got = parse_line(capsys.readouterr().err, "valid")
    for key in ("loss", "nll_loss", "ppl"):
        assert got[key] == pytest.approx(expected[key], abs=1e-3 if key != "ppl" else 0.02), key
    assert (got["wpb"], got["bsz"]) == (expected["wpb"], expected["bsz"]) == (8825, 200)


def test_missing_split_is_a_clear_error(fairseq_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mt = fairseq_fixtures / "mt"
    argv = [str(mt / "data-bin"), "--cpu", "--path", str(mt / "checkpoints" / "checkpoint_best.pt")]
    argv += ["--valid-subset", "nosuchsplit", "--batch-size", "32", "--num-workers", "0"]
    assert validate.main(argv) == 1
    err = capsys.readouterr().err
    assert "split 'nosuchsplit' not found" in err and "nosuchsplit.en-es.en.bin" in err


def test_a_split_with_every_sample_skipped_is_an_error_not_a_loss_of_0(
    fairseq_fixtures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mt = fairseq_fixtures / "mt"
    argv = [str(mt / "data-bin"), "--cpu", "--path", str(mt / "checkpoints" / "checkpoint_best.pt")]
    argv += ["--task", "translation", "--max-tokens", "5", "--skip-invalid-size-inputs-valid-test"]
    assert validate.main(argv) == 1
    err = capsys.readouterr().err
    assert "nothing to run on 'valid': all 200 samples are longer than max_positions=(5, 5)" in err
    assert "valid on 'valid' subset" not in err


def test_bf16_casts_the_model_and_stays_close(fairseq_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--fp16``/``--bf16`` cast the model (fairseq's ``model.half()``); the loss stays close to fp32's."""
    mt = fairseq_fixtures / "mt"
    argv = [
        str(mt / "data-bin"),
        "--cpu",
        "--task",
        "translation",
        "--path",
        str(mt / "checkpoints" / "checkpoint_best.pt"),
    ]
    argv += ["--valid-subset", "valid", "--batch-size", "32", "--num-workers", "0"]
    assert validate.main(argv) == 0
    fp32 = parse_line(capsys.readouterr().err, "valid")
    assert validate.main([*argv, "--bf16"]) == 0
    bf16 = parse_line(capsys.readouterr().err, "valid")
    assert bf16["ppl"] != fp32["ppl"]  # the weights really were cast (the loss agrees to its 3 printed decimals)
    assert bf16["loss"] == pytest.approx(fp32["loss"], abs=0.05)


def test_an_export_validates_with_the_criterion_named_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export records no criterion: ``--criterion masked_lm`` gives the checkpoint's loss (fairseq-validate's
    8.356), where the cross_entropy fallback divides by every token (with a warning saying so)."""
    from seqloom.cli.main import main as seqloom_main

    roberta = Path(__file__).resolve().parents[1] / "fixtures" / "roberta"
    gpt2 = roberta / "gpt2"
    bpe = Path(__file__).resolve().parents[1] / "fixtures" / "gpt2-bpe"
    out = tmp_path / "exported"
    argv = ["export", "--path", str(gpt2 / "model.pt"), "--data", str(gpt2), "--out", str(out), "--bpe", "gpt2",
            "--gpt2-encoder-json", str(bpe / "encoder.json"), "--gpt2-vocab-bpe", str(bpe / "vocab.bpe")]  # fmt: skip
    assert seqloom_main(argv) == 0
    common = [str(gpt2), "--path", str(out / "model.safetensors"), "--task", "masked_lm", "--tokens-per-sample",
              "128", "--sample-break-mode", "complete", "--batch-size", "16", "--cpu", "--num-workers", "0"]  # fmt: skip
    capsys.readouterr()
    assert validate.main([*common, "--criterion", "masked_lm"]) == 0
    assert "| loss 8.356 |" in capsys.readouterr().err
    assert validate.main(common) == 0
    err = capsys.readouterr().err
    assert "| loss 8.356 |" not in err and "records no criterion" in err
