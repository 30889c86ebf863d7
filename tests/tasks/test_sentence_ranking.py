"""--task/--criterion sentence_ranking on fairseq's tiny RoBERTa (tests/fixtures/roberta/ranking, made by
scripts/make_roberta_ranking_fixtures.sh): fairseq's fine-tuned checkpoint scores and validates as in fairseq,
README.race.md's fine-tuning command gives fairseq-train's batches and losses, and fairseq reads the result."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from seqloom.checkpoint.io import load_checkpoint
from seqloom.cli import train, validate
from seqloom.cli.validate import load_model
from seqloom.criterions.sentence_ranking import (
    SentenceRankingCriterion,
    SentenceRankingCriterionConfig,
    stacked_options,
)
from seqloom.data.sentence_ranking_dataset import option_tokens, read_choice_labels
from seqloom.tasks.sentence_ranking import SentenceRankingConfig, SentenceRankingTask

ROBERTA = Path(__file__).resolve().parents[1] / "fixtures" / "roberta"
FIXTURE = ROBERTA / "ranking"
TASK = ["--task", "sentence_ranking", "--num-classes", "4", "--init-token", "0", "--separator-token", "2",
        "--max-option-length", "16", "--shorten-method", "truncate"]  # fmt: skip
SIZE = ["--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2"]  # fmt: skip
INNER = re.compile(r"train_inner \| epoch (\d+):\s+(\d+) / \d+ loss=([\d.]+), nll_loss=[\d.]+, accuracy=([\d.]+), "
                   r"wps=[\d.]+, ups=[\d.]+, wpb=(\d+), bsz=(\d+), num_updates=(\d+)")  # fmt: skip
VALID = re.compile(r"valid on '(\w+)' subset \| (.*)")


def valid_figures(text: str) -> dict[str, float]:
    m = VALID.search(text)
    assert m, f"no validation line in:\n{text[-2000:]}"
    return {k: float(v) for k, v in (item.split(" ") for item in m.group(2).split(" | "))}


def inner_lines(text: str) -> list[tuple[int, float, float, int, int]]:
    """(update, loss, accuracy, wpb, bsz) of each train_inner line."""
    return [(int(m[7]), float(m[3]), float(m[4]), int(m[5]), int(m[6])) for m in INNER.finditer(text)]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "race-bin"
    shutil.copytree(FIXTURE / "data", folder)
    return folder


def task_for(data: Path, **changes: object) -> SentenceRankingTask:
    cfg = SentenceRankingConfig(data=str(data), num_classes=4, init_token=0, separator_token=2, max_option_length=16,
                                shorten_method="truncate", max_positions=128, no_shuffle=True)  # fmt: skip
    for key, value in changes.items():
        setattr(cfg, key, value)
    return SentenceRankingTask.setup_task(cfg)


def test_option_sequences_are_init_option_sep_context(data: Path) -> None:
    task = task_for(data)
    dataset = task.load_dataset("valid")
    context, option = task._tokens("input0", "valid"), task._tokens("input1", "valid")
    item = dataset[3]["source"][0]
    head = torch.cat([torch.tensor([0]), option[3].long()])[:16]
    assert item.tolist() == [*head.tolist(), 2, *context[3].long().tolist()][:128]
    assert len(dataset[3]["source"]) == 4
    # --max-option-length counts the init token; the option's </s> is cut when the option is longer
    unbounded = option_tokens(option, context, init_token=0, separator_token=2, max_option_length=None)
    long_rows = [i for i in range(len(option)) if option.sizes[i] + 1 > 16]
    assert long_rows and all(dataset[i]["source"][0].numel() < unbounded[i].numel() for i in long_rows)
    # sizes: the longest option of each example (what batching and --max-positions count)
    expected = np.max([[s.numel() for s in dataset[i]["source"]] for i in range(len(dataset))], axis=1)
    assert dataset.sizes.tolist() == expected.tolist()


def test_scores_equal_fairseqs(data: Path) -> None:
    """fairseq's model scored each option alone; seqloom scores all B x N option sequences in one call."""
    reference = json.loads((FIXTURE / "scores.json").read_text())
    task = task_for(data)
    dataset = task.load_dataset("valid")
    model, _ = load_model(str(FIXTURE / "finetuned.pt"), task, {}, torch.device("cpu"))
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    tokens, n = stacked_options(batch, task.dictionary.pad())
    assert n == 4 and tokens.shape[0] == 4 * len(dataset)
    with torch.no_grad():
        scores = model(tokens, features_only=True, classification_head_name="sentence_classification_head").logits
    torch.testing.assert_close(scores.view(n, -1).t(), torch.tensor(reference["valid_scores"]), atol=1e-5, rtol=0)
    assert batch["target"].tolist() == reference["valid_targets"]


def test_validate_on_fairseqs_checkpoint(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README.race.md's evaluation command: fairseq-validate's line and its --save-predictions file."""
    preds = tmp_path / "preds.tsv"
    argv = [str(data), "--path", str(FIXTURE / "finetuned.pt"), *TASK, "--max-positions", "128",
            "--criterion", "sentence_ranking", "--batch-size", "1", "--save-predictions", str(preds), "--cpu"]  # fmt: skip
    assert validate.main(argv) == 0
    got, theirs = valid_figures(capsys.readouterr().err), valid_figures((FIXTURE / "validate.log").read_text())
    assert {k: got[k] for k in ("loss", "nll_loss", "accuracy", "wpb", "bsz")} == {
        k: theirs[k] for k in ("loss", "nll_loss", "accuracy", "wpb", "bsz")
    }
    # fairseq 0.12 left the last example out: with --batch-size 1 and its default --required-batch-size-multiple
    # of 8 it drops the last, partial batch of 8 (fairseq issues #5036, #5351); seqloom scores every example
    ours, theirs_rows = preds.read_text().splitlines(), (FIXTURE / "preds.tsv").read_text().splitlines()
    assert len(ours) == 16 and len(theirs_rows) == 15 and ours[:15] == theirs_rows


def race_finetuning(data: Path, save_dir: Path) -> list[str]:
    """README.race.md's fairseq-train command as the fixture script ran it (small sizes, no dropout)."""
    return [str(data), "--cpu", "--num-workers", "0", "--seed", "1", "--restore-file", str(ROBERTA / "gpt2" / "model.pt"),
            "--reset-optimizer", "--reset-dataloader", "--reset-meters", "--best-checkpoint-metric", "accuracy",
            "--maximize-best-checkpoint-metric", *TASK, "--max-positions", "128", "--arch", "roberta_base", *SIZE,
            "--dropout", "0.0", "--attention-dropout", "0.0", "--weight-decay", "0.01", "--criterion",
            "sentence_ranking", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06",
            "--clip-norm", "0.0", "--lr-scheduler", "fixed", "--lr", "3e-3", "--batch-size", "8",
            "--required-batch-size-multiple", "1", "--update-freq", "2", "--max-update", "12", "--log-format",
            "simple", "--log-interval", "1", "--save-dir", str(save_dir), "--no-epoch-checkpoints",
            "--no-save-optimizer-state", "--no-last-checkpoints"]  # fmt: skip


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(data, seqloom's checkpoint_best.pt, the training log) of the RACE recipe's run."""
    root = tmp_path_factory.mktemp("race")
    data = root / "race-bin"
    shutil.copytree(FIXTURE / "data", data)
    log = root / "train.log"
    argv = race_finetuning(data, root / "ck") + ["--log-file", str(log)]
    assert train.main(argv) == 0
    return data, root / "ck" / "checkpoint_best.pt", log.read_text()


def test_training_follows_fairseq_train(finetuned: tuple[Path, Path, str]) -> None:
    """Same batches (words and examples per update) in the same order over 4 epochs, losses within 0.005.

    The losses drift apart by a few thousandths: Adam's first step moves every weight by about the learning rate
    whatever the size of its gradient, so float rounding in near-zero gradients is amplified; the head's
    initial weights are fairseq's (same seed, same draws)."""
    _, checkpoint, log = finetuned
    ours, theirs = inner_lines(log), inner_lines((FIXTURE / "train.log").read_text())
    assert len(theirs) == 12 and [r[0] for r in ours] == [r[0] for r in theirs]
    assert [(r[3], r[4]) for r in ours] == [(r[3], r[4]) for r in theirs]  # the same batches
    assert ours[0][1:3] == theirs[0][1:3]  # the first update: fairseq's initial head, loss and accuracy
    assert np.abs(np.array([r[1] for r in ours]) - np.array([r[1] for r in theirs])).max() <= 0.005
    state = load_checkpoint(checkpoint)
    assert state["model"]["classification_heads.sentence_classification_head.out_proj.weight"].shape == (1, 32)
    assert (
        state["args"].task == "sentence_ranking" and state["args"].ranking_head_name == "sentence_classification_head"
    )


def test_fairseq_validates_seqloom_checkpoint(finetuned: tuple[Path, Path, str], peer_python: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    data, checkpoint, _ = finetuned
    flags = [str(data), "--path", str(checkpoint), *TASK, "--criterion", "sentence_ranking", "--batch-size", "4",
             "--required-batch-size-multiple", "1", "--cpu"]  # fmt: skip
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(peer_python.parent / "fairseq-validate"), *flags, "--num-workers", "0"],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert validate.main([*flags, "--max-positions", "128"]) == 0
    ours, theirs = valid_figures(capsys.readouterr().err), valid_figures(done.stdout + done.stderr)
    assert {k: ours[k] for k in ("loss", "accuracy", "wpb", "bsz")} == {
        k: theirs[k] for k in ("loss", "accuracy", "wpb", "bsz")
    }


def test_unlabelled_split_is_scored_without_loss(data: Path, tmp_path: Path) -> None:
    """A split with no label/{split}.label (a test set): no target, loss 0, predictions in two columns."""
    for name in ("input0", "input1", "input2", "input3", "input4"):
        for suffix in ("bin", "idx"):
            shutil.copy(data / name / f"valid.{suffix}", data / name / f"test.{suffix}")
    task = task_for(data)
    dataset = task.load_dataset("test")
    model, _ = load_model(str(FIXTURE / "finetuned.pt"), task, {}, torch.device("cpu"))
    preds = tmp_path / "test.tsv"
    criterion = SentenceRankingCriterion(SentenceRankingCriterionConfig(save_predictions=str(preds)), padding_idx=1)
    batch = dataset.collater([dataset[i] for i in range(4)])
    assert "target" not in batch
    loss, sample_size, log = criterion(model, batch)
    assert float(loss.detach()) == 0.0 and loss.requires_grad and sample_size == 4 and "ncorrect" not in log
    assert SentenceRankingCriterion.reduce_metrics([log]).get("accuracy") is None
    rows = [line.split("\t") for line in preds.read_text().splitlines()]
    assert [r[0] for r in rows] == ["0", "1", "2", "3"] and all(len(r) == 2 and r[1] in "0123" for r in rows)


def test_errors_name_the_file_and_the_flag(data: Path) -> None:
    with pytest.raises(ValueError, match="set --num-classes"):
        task_for(data, num_classes=None)
    (data / "label" / "valid.label").write_text("1\n7\n")
    with pytest.raises(ValueError, match=r"valid\.label:2: expected the index of the right option, 0 to 3"):
        task_for(data).load_dataset("valid")
    (data / "label" / "valid.label").write_text("1\n2\n")
    with pytest.raises(ValueError, match=r"valid\.label has 2 labels but input0/valid\.bin 16 examples"):
        task_for(data).load_dataset("valid")
    with pytest.raises(FileNotFoundError, match=r"input5/valid\.bin/\.idx not found \(--num-classes 5"):
        task_for(data, num_classes=5).load_dataset("valid")
    labels = FIXTURE / "data" / "label" / "valid.label"
    assert read_choice_labels(str(labels), num_classes=4) == [int(x) for x in labels.read_text().split()]


def test_hub_predict_scores_an_option_as_fairseq(data: Path, tmp_path: Path, gpt2_bpe: Path) -> None:
    """The commonsense_qa README's way of using a ranking model: ``predict(head, tokens, return_logits=True)`` on
    each option's tokens gives fairseq's score."""
    from seqloom.hub import RobertaModel

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(FIXTURE / "finetuned.pt", folder / "model.pt")
    shutil.copy(FIXTURE / "data" / "input0" / "dict.txt", folder / "dict.txt")
    hub = RobertaModel.from_pretrained(str(folder), bpe="gpt2", gpt2_encoder_json=str(gpt2_bpe / "encoder.json"),
                                       gpt2_vocab_bpe=str(gpt2_bpe / "vocab.bpe"))  # fmt: skip
    dataset = task_for(data).load_dataset("valid")
    reference = json.loads((FIXTURE / "scores.json").read_text())["valid_scores"]
    for i in (0, 5):
        for k in range(4):
            score = hub.predict("sentence_classification_head", dataset[i]["source"][k], return_logits=True)
            assert score.shape == (1, 1) and float(score.detach()) == pytest.approx(reference[i][k], abs=1e-5)


def test_other_criterion_is_refused_naming_the_one_to_use(data: Path, tmp_path: Path) -> None:
    """fairseq refuses this pairing too; seqloom says which criterion the task needs instead of a KeyError."""
    argv = race_finetuning(data, tmp_path / "ck")
    argv[argv.index("sentence_ranking", argv.index("--criterion"))] = "cross_entropy"
    with pytest.raises(SystemExit, match="--criterion cross_entropy cannot train --task sentence_ranking: use "
                                         "--criterion sentence_ranking"):  # fmt: skip
        train.main(argv)
    assert not (tmp_path / "ck" / "checkpoint_last.pt").exists()


def test_a_model_without_heads_is_refused_naming_the_task() -> None:
    from torch import nn

    from seqloom.tasks.base import add_classification_head

    with pytest.raises(ValueError, match=r"sentence_ranking: --arch builds a Linear, which has no classification "
                                         r"heads; use a RoBERTa architecture"):  # fmt: skip
        add_classification_head(nn.Linear(2, 2), "head", 1, task="sentence_ranking", archs="a RoBERTa architecture")
