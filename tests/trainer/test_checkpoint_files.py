"""Which checkpoint files are written and kept (fairseq's names and rules), and the logged line formats."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from seqloom.config.training import CheckpointConfig
from seqloom.trainer.checkpoints import BestTracker, _conditions, checkpoint_paths, prune_checkpoints
from seqloom.trainer.loop import EarlyStopper
from seqloom.trainer.meters import Meter, format_stat
from seqloom.trainer.progress import Progress


def names(
    cfg: CheckpointConfig, *, epoch: int, updates: int, end: bool, val: float | None, best: BestTracker
) -> list[str]:
    best.update(val)
    return _conditions(cfg, epoch=epoch, updates=updates, end_of_epoch=end, val_loss=val, best=best)


def test_names_written_at_epoch_ends_and_update_intervals() -> None:
    cfg = CheckpointConfig(save_interval_updates=50)
    best = BestTracker()
    assert names(cfg, epoch=3, updates=200, end=True, val=4.0, best=best) == [
        "checkpoint3.pt",
        "checkpoint_best.pt",
        "checkpoint_last.pt",
    ]
    # mid-epoch on an update multiple, worse loss: no best
    assert names(cfg, epoch=4, updates=250, end=False, val=4.5, best=best) == [
        "checkpoint_4_250.pt",
        "checkpoint_last.pt",
    ]
    assert names(cfg, epoch=4, updates=251, end=False, val=None, best=best) == ["checkpoint_last.pt"]
    cfg = CheckpointConfig(no_epoch_checkpoints=True, no_last_checkpoints=True)
    assert names(cfg, epoch=5, updates=300, end=True, val=3.0, best=best) == ["checkpoint_best.pt"]
    maximize = BestTracker(maximize=True)
    cfg = CheckpointConfig(best_checkpoint_metric="bleu", maximize_best_checkpoint_metric=True, keep_best_checkpoints=2)
    got = names(cfg, epoch=1, updates=10, end=True, val=20.5, best=maximize)
    assert got[:2] == ["checkpoint1.pt", "checkpoint_best.pt"] and got[2].startswith("checkpoint.best_bleu_20.500")


def test_pruning_keeps_the_newest(tmp_path: Path) -> None:
    for name in [
        "checkpoint_1_100.pt",
        "checkpoint_1_200.pt",
        "checkpoint_2_300.pt",
        "checkpoint1.pt",
        "checkpoint2.pt",
    ]:
        (tmp_path / name).write_bytes(b"x")
    for name in ["checkpoint3.pt", "checkpoint10.pt", "checkpoint_best.pt", "checkpoint_last.pt"]:
        (tmp_path / name).write_bytes(b"x")
    cfg = CheckpointConfig(save_dir=str(tmp_path), keep_interval_updates=2, keep_last_epochs=2)
    prune_checkpoints(cfg, end_of_epoch=False)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [
        "checkpoint10.pt",
        "checkpoint3.pt",
        "checkpoint_1_200.pt",
        "checkpoint_2_300.pt",
        "checkpoint_best.pt",
        "checkpoint_last.pt",
    ]
    assert [Path(p).name for p in checkpoint_paths(str(tmp_path), r"checkpoint(\d+)\.pt")] == [
        "checkpoint10.pt",
        "checkpoint3.pt",
    ]


def test_patience_counts_validations_without_improvement() -> None:
    stop = EarlyStopper(patience=2, maximize=False)
    # strictly better resets the count; equal is not better (fairseq)
    assert [stop.should_stop(v) for v in (5.0, 4.0, 4.5, 3.9, 4.1, 3.9)] == [False] * 5 + [True]
    assert not EarlyStopper(patience=-1, maximize=False).should_stop(1.0)


def test_fairseq_number_formats() -> None:
    assert format_stat(0.0006454972243679028) == "0.000645497"
    assert format_stat(1475.0) == "1475" and format_stat(8.368) == "8.368" and format_stat(300) == "300"
    meter = Meter()
    meter.add(
        {
            "loss": 2 * 1000 * 0.6931471805599453,
            "nll_loss": 1000 * 0.6931471805599453,
            "ntokens": 1000,
            "nsentences": 40,
            "sample_size": 500,
        }
    )
    stats = meter.train_stats(num_updates=1, lr=0.001, clip_norm=0.0, wall=3.2)
    assert list(stats) == [
        "loss",
        "nll_loss",
        "ppl",
        "wps",
        "ups",
        "wpb",
        "bsz",
        "num_updates",
        "lr",
        "gnorm",
        "train_wall",
        "wall",
    ]
    assert (stats["loss"], stats["nll_loss"], stats["ppl"], stats["wpb"], stats["bsz"]) == (4.0, 1.0, 2.0, 1000.0, 40.0)


def test_progress_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    stats = {"loss": 8.38, "ppl": 239.43, "num_updates": 240, "lr": 0.000645497}
    Progress("json").log(stats, tag="train_inner", step=240, epoch=4, i=6, size=78)
    Progress("simple").log(stats, tag="train_inner", step=240, epoch=4, i=6, size=78)
    Progress("simple").print(
        {"loss": 8.368, "wpb": 8825.0}, tag="valid", step=None, epoch=None, prefix="valid on 'valid' subset"
    )
    Progress("none").log(stats, tag="train_inner", step=240, epoch=4, i=6, size=78)
    lines = [r.getMessage() for r in caplog.records]
    assert json.loads(lines[0]) == {
        "epoch": 4,
        "update": 3.077,
        "loss": "8.38",
        "ppl": "239.43",
        "num_updates": "240",
        "lr": "0.000645497",
    }
    assert lines[1] == "epoch 004:      6 / 78 loss=8.38, ppl=239.43, num_updates=240, lr=0.000645497"
    assert lines[2] == "valid on 'valid' subset | loss 8.368 | wpb 8825"
    assert len(lines) == 3
