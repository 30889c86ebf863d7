"""Helpers shared by the fairseq-against-seqloom benchmarks.

Finding fairseq's console scripts, running one tool as a user runs it (a fresh process) while measuring
its wall time, peak resident set size and user CPU time, and reading fairseq's JSON log lines. Standard
library only: ``bart.py`` also imports it inside fairseq's virtualenv.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "fairseq"
SEQLOOM = [sys.executable, "-m", "seqloom"]


def fairseq_bin(script: str) -> Path | None:
    """The bin/ folder holding fairseq's ``script``: ``$FAIRSEQ_BIN`` or ``../peer-venvs/fs/bin``."""
    for candidate in (os.environ.get("FAIRSEQ_BIN"), str(REPO.parent / "peer-venvs" / "fs" / "bin")):
        if candidate and (Path(candidate) / script).exists():
            return Path(candidate)
    return None


def require_fairseq_bin(script: str) -> Path:
    """``fairseq_bin(script)``, or exits saying how to point at a fairseq install."""
    found = fairseq_bin(script)
    if found is None:
        sys.exit(f"{script} not found: set $FAIRSEQ_BIN to the bin/ folder of a fairseq install")
    return found


def thread_env(threads: int) -> dict[str, str]:
    """The environment for both tools: ``threads`` OpenMP/MKL threads, fairseq's checkpoints loadable."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
    }


@dataclass
class Finished:
    """A process that exited with status 0, and what it cost."""

    output: str  # stdout and stderr together
    wall_s: float
    peak_rss_mib: float  # wait4's ru_maxrss (KiB on Linux)
    user_s: float


def run_measured(cmd: list[str], env: dict[str, str]) -> Finished:
    """Runs ``cmd`` to the end; exits with the tail of its output if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    fairseq = Path(cmd[0]).name.startswith("fairseq")
    if code != 0 and fairseq and "done training in" in out:
        # fairseq-train's data thread (BufferedIterator, a daemon) sometimes aborts the process at exit
        print(f"note: {Path(cmd[0]).name} exited with {code} after finishing its training", file=sys.stderr)
    elif code != 0:
        sys.exit(f"{cmd[0]} failed:\n{out[-3000:]}")
    return Finished(out, wall, usage.ru_maxrss / 1024, usage.ru_utime)


def json_lines(text: str, tag: str) -> list[dict[str, str]]:
    """The JSON payloads of ``--log-format json`` lines ``| <tag> | {...}``."""
    rows = []
    for line in text.splitlines():
        m = re.search(rf"\| {tag} \| (\{{.*\}})\s*$", line)
        if m:
            rows.append(json.loads(m.group(1)))
    return rows


def train_words_per_second(log: str) -> float:
    """Tokens of all updates / time in the epochs, from the per-epoch ``train`` lines."""
    tokens = seconds = done = 0.0
    for row in json_lines(log, "train"):  # per epoch: updates / ups = time; wpb * updates = tokens
        updates = float(row["train_num_updates"]) - done
        done = float(row["train_num_updates"])
        tokens += float(row["train_wpb"]) * updates
        seconds += updates / max(float(row["train_ups"]), 1e-9)
    return tokens / max(seconds, 1e-9)


@dataclass
class TrainResult:
    """One training run's figures."""

    wps: float
    peak_rss_mib: float
    valid_loss: float
    wall_s: float


def run_training(cmd: list[str], env: dict[str, str]) -> TrainResult:
    """Runs one training command and reads words/s and the last validation loss from its log."""
    done = run_measured(cmd, env)
    valid = json_lines(done.output, "valid")
    loss = float(valid[-1]["valid_loss"]) if valid else float("nan")
    return TrainResult(train_words_per_second(done.output), done.peak_rss_mib, loss, done.wall_s)


def median_run(results: list[TrainResult]) -> TrainResult:
    """The run with the median words/s (the lower middle one of an even count)."""
    ranked = sorted(results, key=lambda r: r.wps)
    return ranked[(len(ranked) - 1) // 2]


def print_training(results: dict[str, TrainResult]) -> None:
    """A table of both tools' training figures and the seqloom/fairseq ratios against their targets."""
    print(f"{'tool':10} {'words/s':>10} {'peak MiB':>10} {'valid loss':>11} {'wall s':>8}")
    for name, r in results.items():
        print(f"{name:10} {r.wps:10.1f} {r.peak_rss_mib:10.1f} {r.valid_loss:11.3f} {r.wall_s:8.1f}")
    f, s = results["fairseq"], results["seqloom"]
    print(f"speed ratio seqloom/fairseq: {s.wps / f.wps:.2f}x (target >= 1.3x); peak memory ratio "
          f"{s.peak_rss_mib / f.peak_rss_mib:.2f} (target <= 1); valid loss {s.valid_loss:.3f} vs {f.valid_loss:.3f}")  # fmt: skip
