"""The language-model recipe end to end: preprocess --only-source -> train transformer_lm -> eval-lm.

The corpus is the first 300 English lines of the bundled Bible (examples/data/bible-en-es), words as tokens.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from seqloom.checkpoint.io import load_checkpoint
from seqloom.cli import eval_lm, preprocess
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC, run

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "bible-en-es"


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lm-e2e")
    for split, name, n in (("train", "train.en", 300), ("valid", "valid.en", 40)):
        lines = (CORPUS / name).read_text(encoding="utf-8").splitlines()[:n]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["--only-source", "--trainpref", str(root / "train.txt"), "--validpref", str(root / "valid.txt")]
    argv += ["--destdir", str(root / "data-bin"), "--workers", "1", "--thresholdsrc", "2"]
    assert preprocess.main(argv) == 0
    return root / "data-bin"


def train_argv(data: Path, save: Path, *, max_update: int) -> list[str]:
    model = ["--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "1"]
    model += ["--decoder-embed-dim", "32", "--decoder-input-dim", "32", "--decoder-output-dim", "32"]
    model += ["--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "2", "--share-decoder-input-output-embed"]
    model += ["--tokens-per-sample", "64", "--sample-break-mode", "none"]
    optim = ["--optimizer", "adam", "--lr", "0.005", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4"]
    # multiple 1: validation keeps every block (fairseq drops a last batch that is not a multiple), as eval-lm
    run_ = ["--max-tokens", "512", "--max-update", str(max_update), "--seed", "1", "--cpu", "--num-workers", "0"]
    run_ += ["--required-batch-size-multiple", "1"]
    run_ += ["--log-format", "json", "--log-interval", "1", "--save-dir", str(save), "--no-epoch-checkpoints"]
    return [str(data), *model, *optim, *run_]


@pytest.fixture(scope="module")
def trained(data_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, float]], float]:
    save = tmp_path_factory.mktemp("lm-ckpt")
    loop = run(parse_args(SPEC, train_argv(data_bin, save, max_update=12)))
    state = load_checkpoint(save / "checkpoint_last.pt")
    return save, loop.history, float(state["extra_state"]["val_loss"])


def test_training_runs_and_learns(trained: tuple[Path, list[dict[str, float]], float]) -> None:
    save, history, _ = trained
    losses = [h["loss"] for h in history]
    assert [h["num_updates"] for h in history] == list(range(1, 13))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
    state = load_checkpoint(save / "checkpoint_last.pt")
    assert (state["args"].arch, state["args"].task, state["args"].tokens_per_sample) == (
        "transformer_lm", "language_modeling", 64)  # fmt: skip
    assert "decoder.layers.0.self_attn.q_proj.weight" in state["model"]


def test_eval_lm_reproduces_the_validation_loss(
    data_bin: Path, trained: tuple[Path, list[dict[str, float]], float], capsys: pytest.CaptureFixture[str]
) -> None:
    save, _, val_loss = trained
    argv = [str(data_bin), "--cpu", "--path", str(save / "checkpoint_last.pt"), "--gen-subset", "valid"]
    assert eval_lm.main([*argv, "--tokens-per-sample", "64", "--max-tokens", "512"]) == 0
    m = re.search(r"Loss \(base 2\): ([0-9.]+), Perplexity: ([0-9.]+)", capsys.readouterr().err)
    assert m is not None
    # the same blocks, the same model: the per-token loss the trainer validated with (base 2)
    assert float(m.group(1)) == pytest.approx(val_loss, abs=1e-3)
    assert float(m.group(2)) == pytest.approx(2 ** float(m.group(1)), rel=1e-3)
