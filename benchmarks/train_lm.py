"""Runs the same language-model training command under ``fairseq-train`` and ``seqloom train``.

Both train fairseq's fixture LM recipe (``transformer_lm`` 2 layers d64, shared embeddings,
``--tokens-per-sample 128``, Adam, inverse_sqrt, ``--max-tokens 2048``, ``--seed 1``) on ``lm/data-bin`` for
``--max-update`` updates on the CPU with ``--threads`` threads, each in a fresh process, alternating tools
``--repeats`` times. Reported per tool (best run): training words per second (tokens of all updates / time
in the epochs, from the JSON ``train`` lines), the peak resident set size (``wait4``'s ``ru_maxrss``) and the
last validation loss. Targets: seqloom >= 1.3x fairseq's words/s with <= its peak memory.

    python benchmarks/train_lm.py [--max-update 200] [--threads 2] [--repeats 1]

fairseq is found through ``$FAIRSEQ_BIN`` or ``../peer-venvs/fs/bin``. Check ``uptime`` first: other load on
the machine distorts both figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "fairseq"


@dataclass
class Result:
    """One run's figures."""

    wps: float
    peak_rss_mib: float
    valid_loss: float
    wall_s: float


def fairseq_bin() -> Path | None:
    for candidate in (os.environ.get("FAIRSEQ_BIN"), str(REPO.parent / "peer-venvs" / "fs" / "bin")):
        if candidate and (Path(candidate) / "fairseq-train").exists():
            return Path(candidate)
    return None


def recipe(data: Path, save_dir: Path, max_update: int) -> list[str]:
    """fairseq's fixture command (lm/README.md), without checkpoints."""
    return [
        str(data), "--cpu", "--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "2",
        "--decoder-embed-dim", "64", "--decoder-ffn-embed-dim", "128", "--decoder-attention-heads", "4",
        "--share-decoder-input-output-embed", "--tokens-per-sample", "128", "--sample-break-mode", "none",
        "--max-tokens", "2048", "--max-update", str(max_update), "--optimizer", "adam", "--lr", "1e-3",
        "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "50", "--seed", "1", "--log-format", "json",
        "--log-interval", "10", "--num-workers", "0", "--no-epoch-checkpoints", "--no-save",
        "--save-dir", str(save_dir),
    ]  # fmt: skip


def json_lines(text: str, tag: str) -> list[dict[str, str]]:
    rows = []
    for line in text.splitlines():
        m = re.search(rf"\| {tag} \| (\{{.*\}})\s*$", line)
        if m:
            rows.append(json.loads(m.group(1)))
    return rows


def summarize(log: str, wall: float, rss_mib: float) -> Result:
    tokens = seconds = 0.0
    done = 0.0
    for row in json_lines(log, "train"):  # per epoch: updates / ups = time; wpb * updates = tokens
        updates = float(row["train_num_updates"]) - done
        done = float(row["train_num_updates"])
        tokens += float(row["train_wpb"]) * updates
        seconds += updates / max(float(row["train_ups"]), 1e-9)
    valid = json_lines(log, "valid")
    loss = float(valid[-1]["valid_loss"]) if valid else float("nan")
    return Result(tokens / max(seconds, 1e-9), rss_mib, loss, wall)


def run(cmd: list[str], env: dict[str, str]) -> Result:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed:\n{out[-3000:]}")
    return summarize(out, wall, usage.ru_maxrss / 1024)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-update", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--data", type=Path, default=FIXTURES / "lm" / "data-bin")
    args = p.parse_args()
    fs = fairseq_bin()
    if fs is None:
        sys.exit("fairseq-train not found: set $FAIRSEQ_BIN to the bin/ folder of a fairseq install")
    threads = str(args.threads)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
    }
    tools = {"fairseq": [str(fs / "fairseq-train")], "seqloom": [sys.executable, "-m", "seqloom", "train"]}
    results: dict[str, list[Result]] = {name: [] for name in tools}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, exe in tools.items():
                results[name].append(run(exe + recipe(args.data, Path(tmp) / name, args.max_update), env))
    best = {name: max(runs, key=lambda r: r.wps) for name, runs in results.items()}
    print(f"{'tool':10} {'words/s':>10} {'peak MiB':>10} {'valid loss':>11} {'wall s':>8}")
    for name, r in best.items():
        print(f"{name:10} {r.wps:10.1f} {r.peak_rss_mib:10.1f} {r.valid_loss:11.3f} {r.wall_s:8.1f}")
    f, s = best["fairseq"], best["seqloom"]
    print(f"speed ratio seqloom/fairseq: {s.wps / f.wps:.2f}x (target >= 1.3x); peak memory ratio "
          f"{s.peak_rss_mib / f.peak_rss_mib:.2f} (target <= 1); valid loss {s.valid_loss:.3f} vs {f.valid_loss:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
