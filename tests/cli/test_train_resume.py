"""Exact resume past the first epoch, and the epoch summary of a resumed epoch (issue 24).

A 1+1-layer d16 transformer on 160 synthetic pairs (11 batches an epoch) trains for 3 epochs; runs stopped
(by --max-update, or by SIGKILL in a child process) in epochs 1, 2 and 3, at and between the
--save-interval-updates checkpoints, then resumed, end with the uninterrupted run's losses and weights.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqloom.checkpoint.io import load_checkpoint
from seqloom.cli import preprocess
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC, run

UPDATES = 33  # 3 epochs of 11 batches


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    rng = random.Random(5)
    for split, n in (("train", 160), ("valid", 16)):
        src, tgt = [], []
        for _ in range(n):
            words = [rng.randrange(24) for _ in range(rng.randint(3, 11))]
            src.append(" ".join(f"s{w}" for w in words))
            tgt.append(" ".join(f"t{w}" for w in reversed(words)))
        (root / f"{split}.src").write_text("\n".join(src) + "\n", encoding="utf-8")
        (root / f"{split}.tgt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    argv = ["--source-lang", "src", "--target-lang", "tgt", "--trainpref", str(root / "train")]
    argv += ["--validpref", str(root / "valid"), "--destdir", str(root / "data-bin"), "--workers", "1"]
    assert preprocess.main(argv) == 0
    return root / "data-bin"


def train_args(data: Path, save_dir: Path, max_update: int) -> list[str]:
    model = ["--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1"]
    model += ["--encoder-embed-dim", "16", "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "16"]
    model += ["--decoder-ffn-embed-dim", "16", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"]
    model += ["--dropout", "0.1", "--share-decoder-input-output-embed"]
    optim = ["--optimizer", "adam", "--lr", "0.005", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4"]
    optim += ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]
    run_ = ["--max-tokens", "160", "--max-update", str(max_update), "--seed", "3", "--cpu", "--num-workers", "0"]
    run_ += ["--log-format", "json", "--log-interval", "1", "--save-dir", str(save_dir), "--no-epoch-checkpoints"]
    run_ += ["--save-interval-updates", "5", "--disable-validation"]
    return [str(data), *model, *optim, *run_]


def epoch_summaries(records: list[logging.LogRecord]) -> dict[int, dict[str, str]]:
    """The ``train`` lines at the ends of epochs, by epoch."""
    rows = [json.loads(r.getMessage()) for r in records if r.name == "train"]
    return {int(row["epoch"]): row for row in rows}


def train(argv: list[str], caplog: pytest.LogCaptureFixture) -> tuple[list[dict[str, float]], dict[int, dict]]:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        history = run(parse_args(SPEC, argv)).history
    return history, epoch_summaries(caplog.records)


@pytest.fixture(scope="module")
def uninterrupted(data_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, dict]:
    save = tmp_path_factory.mktemp("whole")
    handler = _Collect()
    logging.getLogger("train").addHandler(handler)
    try:
        history = run(parse_args(SPEC, train_args(data_bin, save, UPDATES))).history
    finally:
        logging.getLogger("train").removeHandler(handler)
    assert [h["num_updates"] for h in history] == list(range(1, UPDATES + 1))
    return save / "checkpoint_last.pt", history, epoch_summaries(handler.records)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def assert_same_weights(a: Path, b: Path) -> None:
    x, y = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert x.keys() == y.keys()
    for key in x:
        assert torch.equal(x[key], y[key]), key


def test_stops_in_epochs_1_2_3_at_and_between_checkpoints_resume_exactly(
    data_bin: Path, uninterrupted: tuple[Path, list, dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Stops at updates 7 (epoch 1, between interval checkpoints), 11 (epoch 1's end), 15 (epoch 2, an interval
    checkpoint), 25 and 28 (epoch 3): each resumed run goes on with the uninterrupted run's losses, and the last
    weights are equal. The epoch summaries of resumed epochs cover the whole epoch."""
    last, whole, summaries = uninterrupted
    history: list[dict[str, float]] = []
    resumed_summaries: dict[int, dict] = {}
    for stop in (7, 11, 15, 25, 28, UPDATES):
        got, lines = train(train_args(data_bin, tmp_path, stop), caplog)
        history += got
        resumed_summaries.update(lines)
    assert [h["num_updates"] for h in history] == list(range(1, UPDATES + 1))
    assert [(h["loss"], h["nll_loss"]) for h in history] == [(h["loss"], h["nll_loss"]) for h in whole]
    assert_same_weights(tmp_path / "checkpoint_last.pt", last)
    for epoch in (1, 2, 3):  # epochs 2 and 3 resumed mid-epoch: the summaries count every update
        want, got_line = summaries[epoch], resumed_summaries[epoch]
        for key in ("train_loss", "train_nll_loss", "train_ppl", "train_wpb", "train_bsz", "train_num_updates"):
            assert got_line[key] == want[key], (epoch, key)


KILLER = """
import os, signal, sys
from seqloom.trainer.trainer import Trainer
step = Trainer.train_step
at = int(os.environ["KILL_AT"])
def dying(self, samples):
    if self.num_updates == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, samples)
Trainer.train_step = dying
from seqloom.cli.train import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_in_epochs_2_and_3_between_checkpoints_then_the_same_command_resumes_exactly(
    data_bin: Path, uninterrupted: tuple[Path, list, dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    last, whole, _ = uninterrupted
    argv = train_args(data_bin, tmp_path, UPDATES)
    for kill_at, saved_at in ((17, 15), (28, 25)):  # epoch 2 and epoch 3; the last checkpoint 2 or 3 updates back
        env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_AT": str(kill_at)}
        proc = subprocess.run([sys.executable, "-c", KILLER, *argv], env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        state = load_checkpoint(tmp_path / "checkpoint_last.pt")
        assert state["optimizer_history"][-1]["num_updates"] == saved_at
    history, _ = train(argv, caplog)
    assert [h["num_updates"] for h in history] == list(range(26, UPDATES + 1))
    assert [(h["loss"], h["nll_loss"]) for h in history] == [(h["loss"], h["nll_loss"]) for h in whole[25:]]
    assert_same_weights(tmp_path / "checkpoint_last.pt", last)
