"""One trainer per --save-dir (an OS lock, tested with real processes) and the removal of crash debris."""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from seqloom.checkpoint.io import load_checkpoint, save_checkpoint
from seqloom.cli import preprocess
from seqloom.cli.parser import parse_args
from seqloom.cli.train import SPEC, run
from seqloom.trainer.save_dir import STALE_TEMP_NAMES, SaveDirInUseError, SaveDirLock


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("savedir")
    rng = random.Random(7)
    for split, n in (("train", 48), ("valid", 8)):
        src = [" ".join(f"w{rng.randrange(20)}" for _ in range(rng.randint(3, 8))) for _ in range(n)]
        (root / f"{split}.src").write_text("\n".join(src) + "\n", encoding="utf-8")
        (root / f"{split}.tgt").write_text("\n".join(s.upper() for s in src) + "\n", encoding="utf-8")
    argv = ["--source-lang", "src", "--target-lang", "tgt", "--trainpref", str(root / "train")]
    argv += ["--validpref", str(root / "valid"), "--destdir", str(root / "data-bin"), "--workers", "1"]
    assert preprocess.main(argv) == 0
    return root / "data-bin"


def train_args(data: Path, save_dir: Path, max_update: int) -> list[str]:
    model = ["--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "8"]
    model += ["--decoder-embed-dim", "8", "--encoder-ffn-embed-dim", "8", "--decoder-ffn-embed-dim", "8"]
    model += ["--encoder-attention-heads", "1", "--decoder-attention-heads", "1"]
    run_ = ["--optimizer", "adam", "--lr", "0.001", "--max-tokens", "100", "--max-update", str(max_update)]
    run_ += ["--cpu", "--num-workers", "0", "--save-dir", str(save_dir), "--disable-validation", "--no-progress-bar"]
    return [str(data), *model, *run_]


# a trainer that stops at update 2 until the file $GO exists (it first creates $READY)
WAITING = """
import os, sys, time
from seqloom.trainer.trainer import Trainer
step = Trainer.train_step
def waiting(self, samples):
    if self.num_updates == 2:
        open(os.environ["READY"], "w").close()
        deadline = time.time() + 120
        while not os.path.exists(os.environ["GO"]) and time.time() < deadline:
            time.sleep(0.05)
    return step(self, samples)
Trainer.train_step = waiting
from seqloom.cli.train import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_second_trainer_on_the_folder_is_refused_naming_the_first_and_a_killed_ones_lock_never_blocks(
    data_bin: Path, tmp_path: Path
) -> None:
    save = tmp_path / "ck"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "READY": str(tmp_path / "ready"), "GO": str(tmp_path / "go")}
    first = subprocess.Popen([sys.executable, "-c", WAITING, *train_args(data_bin, save, 6)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (tmp_path / "ready").exists():
            assert first.poll() is None and time.time() < deadline, first.communicate()[1][-2000:]
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "seqloom", "train", *train_args(data_bin, save, 4)],
                                env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert second.returncode == 1, second.stderr[-2000:]
        errors = [line for line in second.stderr.splitlines() if "| ERROR |" in line]
        assert len(errors) == 1 and "Traceback" not in second.stderr
        assert f"--save-dir {save} is in use by another training run (pid {first.pid} on host " in errors[0]
        assert "choose another --save-dir" in errors[0]
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock
        first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    # the OS dropped the dead run's lock: the same command trains (and resumes where the dead run saved)
    assert run(parse_args(SPEC, train_args(data_bin, save, 4))).trainer.num_updates == 4
    assert load_checkpoint(save / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"] == 4
    assert "pid" in (save / ".seqloom-train.lock").read_text()


def test_the_lock_is_exclusive_between_open_files_and_released_by_closing(tmp_path: Path) -> None:
    with SaveDirLock(str(tmp_path)):
        with pytest.raises(SaveDirInUseError, match=rf"in use by another training run \(pid {os.getpid()} on host"):
            SaveDirLock(str(tmp_path)).acquire()
    with SaveDirLock(str(tmp_path)) as again:  # released on exit
        assert again.held


def test_stale_temp_files_of_interrupted_saves_are_removed_and_others_kept(
    data_bin: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    save = tmp_path / "ck"
    save.mkdir()
    # the temp name save_checkpoint really uses (captured at its rename), so the pattern follows the scheme
    seen: list[str] = []
    real_replace = os.replace

    def spying(src: str, dst: str) -> None:
        seen.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spying)
    save_checkpoint({"x": 1}, tmp_path / "checkpoint_last.pt")
    monkeypatch.undo()
    assert seen and STALE_TEMP_NAMES.fullmatch(seen[0]), seen
    stale = [seen[0], ".checkpoint_best.pt.k3j_x9a2.tmp", "checkpoint_1_4.pt.tmp4242", ".write-test-99"]
    kept = ["notes.tmp", ".checkpoint_last.pt.tmp", "mine.pt.tmp12", "checkpoint_last.pt.bak", "data.tmp"]
    for name in stale + kept:
        (save / name).write_bytes(b"x" * 1000)
    with caplog.at_level(logging.INFO):
        run(parse_args(SPEC, train_args(data_bin, save, 1)))
    left = {p.name for p in save.iterdir()}
    assert not left & set(stale) and set(kept) <= left
    (line,) = [r.getMessage() for r in caplog.records if "interrupted saves left" in r.getMessage()]
    assert line.startswith(f"removed 4 temp file(s) (0.0 MB) that interrupted saves left in {save}: ")


class FillingDisk:
    """A disk that fills up during the ``fail_at``-th file written (a checkpoint or a copy): that write stops
    midway with ENOSPC, as the OS reports it, after writing part of the data. Later writes succeed (space freed)."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at, self.files = fail_at, 0

    def opened(self) -> bool:
        self.files += 1
        return self.files == self.fail_at


class _FillingFile:
    def __init__(self, f: Any, full: bool) -> None:
        self.f, self.full, self.written = f, full, 0

    def write(self, data: bytes) -> int:
        if self.full and self.written + len(data) > 200:
            self.f.write(bytes(data)[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += len(data)
        return self.f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


def fill_disk(monkeypatch: pytest.MonkeyPatch, fail_at: int) -> FillingDisk:
    import seqloom.checkpoint.io as checkpoint_io

    disk = FillingDisk(fail_at)
    real_fdopen, real_copy = os.fdopen, shutil.copyfile

    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_fdopen(fd, mode, *args, **kwargs)
        return _FillingFile(f, disk.opened()) if "w" in mode else f

    def copyfile(src: str, dst: str) -> str:
        if disk.opened():
            Path(dst).write_bytes(Path(src).read_bytes()[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_copy(src, dst)

    monkeypatch.setattr(checkpoint_io.os, "fdopen", fdopen)
    monkeypatch.setattr(checkpoint_io.shutil, "copyfile", copyfile)
    return disk


@pytest.mark.parametrize(
    ("validate", "fail_at", "failing", "extra"),
    [
        (False, 3, "checkpoint_1_4.pt", ()),  # torch.save's write
        (True, 5, "checkpoint_best.pt", ()),  # the copy to checkpoint_best.pt
        (False, 3, "checkpoint_1_4.pt", ("--write-checkpoints-asynchronously",)),  # raised from the writer thread
    ],
)
def test_a_full_disk_while_saving_stops_with_one_line_and_leaves_no_partial_file(
    data_bin: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    validate: bool, fail_at: int, failing: str, extra: tuple[str, ...],
) -> None:  # fmt: skip
    from seqloom.cli.train import main

    save = tmp_path / "ck"
    argv = [*train_args(data_bin, save, 6), "--save-interval-updates", "2", *extra]
    if validate:
        argv.remove("--disable-validation")
    fill_disk(monkeypatch, fail_at)
    assert main(argv) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "| ERROR |" in line]
    assert (
        "no space left on " in line and f" writing {save / failing}; the previous checkpoint_last.pt is intact" in line
    )
    assert "--continue-on-save-error" in line
    names = sorted(p.name for p in save.iterdir())
    assert names == sorted([".seqloom-train.lock", "checkpoint_1_2.pt", "checkpoint_last.pt",
                            *(["checkpoint_best.pt", "checkpoint_1_4.pt"] if validate else [])])  # fmt: skip
    monkeypatch.undo()
    assert load_checkpoint(save / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"] == 2


def test_continue_on_save_error_trains_on_and_saves_again_once_there_is_room(
    data_bin: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from seqloom.cli.train import main

    save = tmp_path / "ck"
    argv = [*train_args(data_bin, save, 6), "--save-interval-updates", "2", "--continue-on-save-error"]
    fill_disk(monkeypatch, 3)  # the save at update 4 fails; those at 6 succeed
    assert main(argv) == 0
    err = capfd.readouterr().err
    (line,) = [line for line in err.splitlines() if "| ERROR |" in line]
    assert f"writing {save / 'checkpoint_1_4.pt'}; the previous checkpoint_last.pt is intact; training goes on" in line
    assert not [p for p in save.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert load_checkpoint(save / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"] == 6


def test_diverging_training_ends_with_one_message(data_bin: Path, tmp_path: Path, capfd) -> None:
    from seqloom.cli.train import main

    assert main([*train_args(data_bin, tmp_path / "ck", 60), "--lr", "1e3"]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "| ERROR |" in line]
    assert "gradients are NaN/Inf at update" in line and "lower --lr" in line
