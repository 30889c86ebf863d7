"""--task/--criterion masked_lm and RoBERTa fine-tuning through seqloom's CLI, on tests/fixtures/roberta (fairseq's
tiny RoBERTa and its data): validation loss on fairseq's checkpoint, fairseq's README pretraining command (flags
and hydra YAML), the GLUE recipe's fine-tuning from --restore-file with --reset-*, regression."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from seqloom.checkpoint.io import load_checkpoint
from seqloom.cli import train, validate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "roberta"
REFERENCE = json.loads((FIXTURES / "reference.json").read_text())
SIZE = ["--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2"]  # fmt: skip
LINE = re.compile(r"valid on '(\w+)' subset \| (.*)")


def figures(text: str) -> dict[str, float]:
    for line in text.splitlines():
        m = LINE.search(line)
        if m:
            return {k: float(v) for k, v in (item.split(" ") for item in m.group(2).split(" | "))}
    raise AssertionError(f"no validation line in:\n{text}")


def train_losses(text: str) -> list[float]:
    return [float(m.group(1)) for m in re.finditer(r"train_inner \| .*? loss=([0-9.]+)", text)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mlm") / "data-bin"
    folder.mkdir()
    for name in ("dict.txt", "train.bin", "train.idx", "valid.bin", "valid.idx"):
        shutil.copy(FIXTURES / "gpt2" / name, folder / name)
    return folder


def test_validation_loss_equals_fairseqs(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(data), "--cpu", "--num-workers", "0", "--task", "masked_lm", "--criterion", "masked_lm",
            "--tokens-per-sample", "128", "--sample-break-mode", "complete", "--batch-size", "16",
            "--path", str(FIXTURES / "gpt2" / "model.pt")]  # fmt: skip
    assert validate.main(argv) == 0
    got = figures(capsys.readouterr().err)
    # fairseq-validate ran with --required-batch-size-multiple 1: with its default of 8, fairseq 0.12 leaves the
    # last, partial batch (one block) out of evaluation; seqloom evaluates every block
    assert got["loss"] == pytest.approx(REFERENCE["validate_loss"], abs=1e-3)
    assert got["bsz"] == 33 and got["wpb"] == 3573  # fairseq-validate's line: wpb 3573 | bsz 33


def readme_pretraining(data: Path, save_dir: Path) -> list[str]:
    """fairseq's RoBERTa pretraining command (README.pretraining.md, fairseq-train form), sizes made small."""
    tokens_per_sample, peak_lr, warmup, total, max_sentences, update_freq = 128, 0.002, 5, 12, 16, 1
    return [str(data), "--task", "masked_lm", "--criterion", "masked_lm",
            "--arch", "roberta_base", "--sample-break-mode", "complete", "--tokens-per-sample", str(tokens_per_sample),
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6", "--clip-norm", "0.0",
            "--lr-scheduler", "polynomial_decay", "--lr", str(peak_lr), "--warmup-updates", str(warmup),
            "--total-num-update", str(total), "--dropout", "0.1", "--attention-dropout", "0.1",
            "--weight-decay", "0.01", "--batch-size", str(max_sentences), "--update-freq", str(update_freq),
            "--max-update", str(total), "--log-format", "simple", "--log-interval", "1",
            *SIZE, "--cpu", "--num-workers", "0", "--save-dir", str(save_dir), "--no-epoch-checkpoints"]  # fmt: skip


def test_readme_pretraining_command_trains(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(readme_pretraining(data, tmp_path / "ck")) == 0
    err = capsys.readouterr().err
    losses = train_losses(err)
    assert len(losses) == 12 and losses[-1] < losses[0] - 0.2  # masked-LM loss (base 2) falls
    state = load_checkpoint(tmp_path / "ck" / "checkpoint_last.pt")
    keys = set(state["model"])
    assert "encoder.sentence_encoder.embed_positions.weight" in keys and "encoder.lm_head.bias" in keys
    assert tuple(state["model"]["encoder.sentence_encoder.embed_positions.weight"].shape) == (130, 32)
    # a resume continues from the saved update
    argv = readme_pretraining(data, tmp_path / "ck")
    argv[argv.index("--max-update") + 1] = "14"
    assert train.main(argv) == 0
    assert "num_updates=14" in capsys.readouterr().err


def test_readme_pretraining_command_with_bf16_on_the_cpu(data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """``--bf16 --cpu`` (which fairseq-train 0.12 sends to a TPU and fails on) trains with bf16 products and float32
    weights: the losses follow the float32 run's and the checkpoint stays float32, fairseq's keys."""
    assert train.main(readme_pretraining(data, tmp_path / "fp32")) == 0
    fp32 = train_losses(capsys.readouterr().err)
    assert train.main([*readme_pretraining(data, tmp_path / "bf16"), "--bf16"]) == 0
    bf16 = train_losses(capsys.readouterr().err)
    assert len(bf16) == len(fp32) == 12
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < 0.05
    state = load_checkpoint(tmp_path / "bf16" / "checkpoint_last.pt")
    assert {t.dtype for t in state["model"].values() if t.is_floating_point()} == {torch.float32}
    assert set(state["model"]) == set(load_checkpoint(tmp_path / "fp32" / "checkpoint_last.pt")["model"])
    assert state["args"].bf16 is True  # fairseq 0.12 reads a checkpoint's Namespace args too


def test_hydra_yaml_form_of_the_readme_config(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The pretraining YAML's groups (examples/roberta/config/pretraining/base.yaml), sizes made small."""
    config = tmp_path / "base.yaml"
    config.write_text(
        "common:\n  log_format: simple\n  log_interval: 1\ncheckpoint:\n  no_epoch_checkpoints: true\n"
        f"task:\n  _name: masked_lm\n  data: {data}\n  sample_break_mode: complete\n  tokens_per_sample: 128\n"
        "criterion: masked_lm\ndataset:\n  batch_size: 16\n  ignore_unused_valid_subsets: true\n"
        "optimizer:\n  _name: adam\n  weight_decay: 0.01\n  adam_betas: (0.9,0.98)\n  adam_eps: 1e-06\n"
        "lr_scheduler:\n  _name: polynomial_decay\n  warmup_updates: 2\n"
        "optimization:\n  clip_norm: 0\n  lr: [0.0005]\n  max_update: 3\n  update_freq: [1]\n"
        "model:\n  _name: roberta\n  max_positions: 128\n  dropout: 0.1\n  attention_dropout: 0.1\n"
        "  encoder_layers: 2\n  encoder_embed_dim: 32\n  encoder_ffn_embed_dim: 64\n  encoder_attention_heads: 2\n"
    )
    argv = ["--config", str(config), "--cpu", "--num-workers", "0", "--save-dir", str(tmp_path / "ck")]
    assert train.main(argv) == 0
    assert len(train_losses(capsys.readouterr().err)) == 3


def glue(tmp_path: Path) -> Path:
    folder = tmp_path / "glue"
    shutil.copytree(FIXTURES / "gpt2" / "glue", folder)
    return folder


def finetune(data: Path, save_dir: Path, *extra: str) -> list[str]:
    """The GLUE recipe's flags (README.glue.md / config/finetuning), sizes made small."""
    return [str(data), "--restore-file", str(FIXTURES / "gpt2" / "model.pt"), "--max-positions", "128",
            "--batch-size", "8", "--max-tokens", "4400", "--task", "sentence_prediction", "--reset-optimizer",
            "--reset-dataloader", "--reset-meters", "--required-batch-size-multiple", "1", "--init-token", "0",
            "--separator-token", "2", "--arch", "roberta_base", "--criterion", "sentence_prediction", *SIZE,
            "--dropout", "0.1", "--attention-dropout", "0.1", "--weight-decay", "0.1", "--optimizer", "adam",
            "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06", "--clip-norm", "0.0",
            "--lr-scheduler", "polynomial_decay", "--lr", "1e-3", "--total-num-update", "6", "--warmup-updates", "2",
            "--max-update", "6", "--log-format", "simple", "--log-interval", "1", "--cpu", "--num-workers", "0",
            "--save-dir", str(save_dir), "--no-epoch-checkpoints", *extra]  # fmt: skip


def test_glue_finetuning_from_the_pretrained_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = finetune(glue(tmp_path), tmp_path / "ck", "--classification-head-name", "toy_head", "--num-classes", "2",
                    "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric")  # fmt: skip
    assert train.main(argv) == 0
    err = capsys.readouterr().err
    assert "accuracy" in figures(err)
    state = load_checkpoint(tmp_path / "ck" / "checkpoint_best.pt")
    assert state["model"]["classification_heads.toy_head.out_proj.weight"].shape == (2, 32)
    pretrained = load_checkpoint(FIXTURES / "gpt2" / "model.pt")["model"]
    assert set(pretrained) < set(state["model"])  # the pretrained weights plus the new head


def test_regression_target_and_spectral_norm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = glue(tmp_path)
    for split, n in (("train", 80), ("valid", 19)):  # a made-up score per pair
        (data / "label" / f"{split}.label").write_text("".join(f"{(i % 5) / 4:.2f}\n" for i in range(n)))
    for f in (data / "label").glob("*.bin"):
        f.unlink()
    argv = finetune(data, tmp_path / "ck", "--regression-target", "--num-classes", "1",
                    "--spectral-norm-classification-head", "--best-checkpoint-metric", "loss")  # fmt: skip
    assert train.main(argv) == 0
    state = load_checkpoint(tmp_path / "ck" / "checkpoint_last.pt")
    head = "classification_heads.sentence_classification_head.out_proj."
    assert {head + "weight_orig", head + "weight_u", head + "weight_v"} <= set(state["model"])
    assert "accuracy" not in figures(capsys.readouterr().err)


def test_whole_word_masking_flags(data: Path, tmp_path: Path, fairseq_fixtures: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    gpt2 = Path(__file__).resolve().parents[1] / "fixtures" / "gpt2-bpe"
    argv = readme_pretraining(data, tmp_path / "ck")
    argv[argv.index("--max-update") + 1] = "2"
    argv += ["--mask-whole-words", "--bpe", "gpt2", "--gpt2-encoder-json", str(gpt2 / "encoder.json"),
             "--gpt2-vocab-bpe", str(gpt2 / "vocab.bpe"), "--freq-weighted-replacement", "--mask-multiple-length",
             "2", "--disable-validation"]  # fmt: skip
    assert train.main(argv) == 0
    capsys.readouterr()
    assert train.main(readme_pretraining(data, tmp_path / "ck2") + ["--mask-whole-words"]) != 0
    assert "--mask-whole-words needs --bpe" in capsys.readouterr().err


def test_seeded_training_follows_fairseq_train(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same command and seed as fairseq-train (gpt2/seeded.log): the same initial weights, masks, batches and
    dropout, so the same losses."""
    expected = train_losses((FIXTURES / "gpt2" / "seeded.log").read_text())
    argv = [str(data), "--cpu", "--num-workers", "0", "--seed", "1", "--task", "masked_lm", "--criterion", "masked_lm",
            "--arch", "roberta_base", "--sample-break-mode", "complete", "--tokens-per-sample", "128", *SIZE,
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6", "--clip-norm", "0.0",
            "--lr-scheduler", "polynomial_decay", "--lr", "0.002", "--warmup-updates", "5", "--total-num-update", "40",
            "--dropout", "0.1", "--attention-dropout", "0.0", "--weight-decay", "0.01", "--batch-size", "16",
            "--update-freq", "1", "--max-update", "8", "--log-format", "simple", "--log-interval", "1", "--no-save",
            "--disable-validation", "--save-dir", str(tmp_path / "ck")]  # fmt: skip
    assert train.main(argv) == 0
    got = train_losses(capsys.readouterr().err)
    assert len(got) == len(expected) == 8
    assert got == pytest.approx(expected, abs=1.5e-3)  # printed with 3 decimals


@pytest.mark.parametrize("case", sorted(REFERENCE["train_options"]))
def test_every_fairseq_train_option_of_roberta_is_handled(case: str) -> None:
    """A pasted fairseq-train command line for RoBERTa never ends in "unrecognized argument"."""
    from seqloom.cli.fairseq_flags import handled_elsewhere
    from seqloom.cli.parser import SELECTORS, build_parser
    from seqloom.cli.train import SPEC
    from seqloom.components import import_builtins

    import_builtins()
    argv = REFERENCE["train_options"][case]["argv"]
    flags = {flag: dest for dest, (flag, _) in SELECTORS.items()}
    chosen = dict(SPEC.selectors)
    for flag, value in zip(argv, argv[1:]):
        if flag in flags and flags[flag] in chosen:
            chosen[flags[flag]] = value
    ours = set(build_parser(SPEC, chosen)[0].option_names())
    missing = [f for f in REFERENCE["train_options"][case]["options"] if f not in ours and not handled_elsewhere(f)]
    assert missing == []


def test_seeded_training_and_validation_follow_fairseq_train(data: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """gpt2/seeded_valid.log: three epochs with dropout and attention dropout 0.1, validated after each. The same
    training losses (attention dropout draws fairseq's masks) and the same validation losses: the validation split
    keeps its epoch-1 masks at every validation, as in fairseq (``--required-batch-size-multiple 1``: fairseq's
    default of 8 would leave one of the 33 validation blocks out, seqloom keeps it)."""
    log = (FIXTURES / "gpt2" / "seeded_valid.log").read_text()
    expected_valid = [float(v) for v in re.findall(r"valid on 'valid' subset \| loss ([0-9.]+)", log)]
    argv = [str(data), "--cpu", "--num-workers", "0", "--seed", "1", "--task", "masked_lm", "--criterion", "masked_lm",
            "--arch", "roberta_base", "--sample-break-mode", "complete", "--tokens-per-sample", "128", *SIZE,
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6", "--clip-norm", "0.0",
            "--lr-scheduler", "polynomial_decay", "--lr", "0.002", "--warmup-updates", "5", "--total-num-update", "40",
            "--dropout", "0.1", "--attention-dropout", "0.1", "--weight-decay", "0.01", "--batch-size", "16",
            "--update-freq", "1", "--max-update", "33", "--log-format", "simple", "--log-interval", "1", "--no-save",
            "--required-batch-size-multiple", "1", "--save-dir", str(tmp_path / "ck"),
            "--use-old-adam"]  # fmt: skip
    # --use-old-adam: seqloom's exact fairseq Adam update, so no drift from where torch's AdamW adds eps
    assert train.main(argv) == 0
    err = capsys.readouterr().err
    got_valid = [float(v) for v in re.findall(r"valid on 'valid' subset \| loss ([0-9.]+)", err)]
    assert len(expected_valid) == 3 and len(set(expected_valid)) == 3
    assert train_losses(err) == pytest.approx(train_losses(log), abs=1.5e-3)  # printed with 3 decimals
    assert got_valid == pytest.approx(expected_valid, abs=1.5e-3)  # re-masked each epoch: 9.339, 8.735, 8.467
