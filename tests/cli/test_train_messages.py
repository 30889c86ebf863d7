"""What ``seqloom train`` says, in what order: a mistake's message first (no configuration dump before it), the
configuration as one line of the options set away from their defaults, a resumed run's own time and the
total, and log lines that do not run into a progress bar."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqloom.cli import preprocess
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC, run
from seqloom.logs import BarAwareHandler


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("messages")
    words = [" ".join(f"w{(i * 5 + j) % 11}" for j in range(2 + i % 6)) for i in range(48)]
    for split in ("train", "valid"):
        (root / f"{split}.src").write_text("\n".join(words) + "\n", encoding="utf-8")
        (root / f"{split}.tgt").write_text("\n".join(reversed(words)) + "\n", encoding="utf-8")
    argv = ["--source-lang", "src", "--target-lang", "tgt", "--trainpref", str(root / "train")]
    argv += ["--validpref", str(root / "valid"), "--destdir", str(root / "data-bin"), "--workers", "1"]
    assert preprocess.main(argv) == 0
    return root / "data-bin"


def _argv(data: Path | str, save: Path, *extra: str) -> list[str]:
    model = ["--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "8"]
    model += ["--decoder-embed-dim", "8", "--encoder-ffn-embed-dim", "16", "--decoder-ffn-embed-dim", "16"]
    model += ["--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--share-all-embeddings"]
    rest = ["--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "0.001", "--max-tokens", "200"]
    rest += ["--cpu", "--num-workers", "0", "--no-progress-bar", "--save-dir", str(save), "--no-epoch-checkpoints"]
    return [str(data), *model, *rest, *extra]


def _train_cli(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "seqloom", "train", *argv], capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", **os.environ})  # fmt: skip


def test_the_options_line_holds_only_what_differs_from_the_defaults(data_bin: Path, tmp_path: Path) -> None:
    parsed = parse_args(SPEC, _argv(data_bin, tmp_path, "--max-update", "2", "--task", "translation"))
    words = parsed.changed_options()
    line = " ".join(words)
    assert words[:2] == ["--arch", "transformer"] and str(data_bin) in words
    assert "--share-all-embeddings" in words and "--adam-betas '(0.9, 0.98)'" in line
    assert "--lr 0.001" in line and "--max-update 2" in line
    # a value equal to its default (the task, the preset's --dropout) and untouched options are left out
    assert "--task" not in words and "--dropout" not in words and "--seed" not in words and "--fp16" not in words


def test_a_mistake_is_the_first_thing_said_and_the_options_line_comes_once_the_inputs_are_good(
    data_bin: Path, tmp_path: Path
) -> None:
    missing = _train_cli(_argv(tmp_path / "no-such-data", tmp_path / "a", "--max-update", "1"))
    assert missing.returncode != 0 and "no-such-data" in missing.stderr
    assert "Namespace(" not in missing.stderr and "options set away" not in missing.stderr
    bad_restore = _train_cli(_argv(data_bin, tmp_path / "b", "--max-update", "1", "--restore-file", "nowhere.pt"))
    assert bad_restore.returncode == 1 and "--restore-file nowhere.pt" in bad_restore.stderr
    assert "Namespace(" not in bad_restore.stderr and "options set away" not in bad_restore.stderr
    good = _train_cli(_argv(data_bin, tmp_path / "c", "--max-update", "1"))
    assert good.returncode == 0, good.stderr[-2000:]
    lines = good.stderr.splitlines()
    options = [i for i, line in enumerate(lines) if "options set away from their defaults:" in line]
    begin = [i for i, line in enumerate(lines) if "begin training epoch 1" in line]
    assert len(options) == 1 and begin and options[0] < begin[0]
    assert len(lines[options[0]]) < 800 and "Namespace(" not in good.stderr


def test_a_resumed_run_says_its_own_time_and_the_total(
    data_bin: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save = tmp_path / "ckpt"
    with caplog.at_level(logging.INFO):
        first = run(parse_args(SPEC, _argv(data_bin, save, "--max-update", "2")))
    done = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done training")]
    assert len(done) == 1 and done[0].endswith(" seconds") and "(" not in done[0]  # a first run: one figure
    assert first.previous_training_time == 0
    caplog.clear()
    with caplog.at_level(logging.INFO):
        loop = run(parse_args(SPEC, _argv(data_bin, save, "--max-update", "4")))
    (message,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done training")]
    assert loop.previous_training_time > 0
    earlier = f"{loop.previous_training_time:.1f} before it resumed"
    assert message.startswith("done training in ") and f"in this run, {earlier})" in message
    total, this_run = float(message.split()[3]), float(message.split("(")[1].split()[0])
    assert total == pytest.approx(loop.previous_training_time + this_run, abs=0.11)


class _Stream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_go_above_a_shown_progress_bar_not_into_it() -> None:
    from tqdm import tqdm

    stream = _Stream()
    handler = BarAwareHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "Stopping training", None, None)
    bar = tqdm(total=10, file=stream, mininterval=0, ascii=True)
    bar.update(5)
    time.sleep(0.01)
    handler.emit(record)
    bar.close()
    text = stream.getvalue()
    # the line stands alone: the bar was cleared before it (tqdm.write), not continued by it
    assert "5/10" in text and re.search(r"(^|[\r\n])Stopping training\n", text), repr(text)
    plain = _Stream()
    other = BarAwareHandler(plain)
    other.setFormatter(logging.Formatter("%(message)s"))
    other.emit(record)  # no bar: a plain line
    assert plain.getvalue() == "Stopping training\n"


def test_the_training_bar_shows_the_update_the_loss_and_the_runs_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    from seqloom.trainer import progress as progress_module

    stream = _Stream()
    monkeypatch.setattr(sys, "stderr", stream)
    clock = iter([100.0, 130.0])  # 10 updates in 30 s: 80 more take 240 s
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    progress = progress_module.Progress("tqdm")
    progress.max_update = 100
    for step in (10, 20):
        progress.log({"loss": 5.25, "num_updates": step}, tag="train_inner", step=step, epoch=1, i=step, size=40)
        progress.advance(1, 40, 10)
    bar = progress._bar
    assert bar.desc.startswith("epoch 001 | update 20/100, 4:00 left")
    assert bar.postfix == "loss=5.25"
    progress.close()


def test_preprocess_logs_its_options_in_a_line_not_the_whole_config(data_bin: Path) -> None:
    log = (data_bin / "preprocess.log").read_text(encoding="utf-8")
    (line,) = [line for line in log.splitlines() if "options set away from their defaults:" in line]
    assert line.split("defaults: ")[1].split()[:4] == ["--source-lang", "src", "--target-lang", "tgt"]
    assert "--destdir" in line and "--workers" not in line  # 1 is the default
    assert "PreprocessConfig(" not in log and "--dataset-impl" not in line and "--padding-factor" not in line
