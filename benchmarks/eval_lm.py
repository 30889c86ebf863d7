"""Runs the same ``eval-lm`` command under ``fairseq-eval-lm`` and ``seqloom eval-lm`` and compares them.

Both score a split of fairseq's fixture LM data (``lm/data-bin``, default the 112k-token ``train`` split)
with fairseq's fixture checkpoint, ``--tokens-per-sample 128 --max-tokens 2048`` and ``--context-window``
on the CPU with ``--threads`` threads, each in a fresh process, alternating tools ``--repeats`` times.
Reported per tool (best run): tokens per second (the ``Evaluated N tokens in Xs (Y tokens/s)`` line:
model time only), whole-process wall time, peak resident set size (``wait4``'s ``ru_maxrss``) and the loss,
which must agree. Targets: seqloom >= 1.3x fairseq's tokens/s with <= its peak memory.

    python benchmarks/eval_lm.py [--subset train] [--context-window 0] [--threads 2] [--repeats 1]

fairseq is found through ``$FAIRSEQ_BIN`` or ``../peer-venvs/fs/bin``. Check ``uptime`` first.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass

from _common import FIXTURES, SEQLOOM, require_fairseq_bin, run_measured, thread_env


@dataclass
class Result:
    """One run's figures."""

    tokens_per_s: float
    wall_s: float
    peak_rss_mib: float
    loss: float


def command(subset: str, window: int) -> list[str]:
    lm = FIXTURES / "lm"
    return [
        str(lm / "data-bin"), "--cpu", "--path", str(lm / "checkpoints" / "checkpoint_best.pt"),
        "--gen-subset", subset, "--tokens-per-sample", "128", "--max-tokens", "2048",
        "--context-window", str(window), "--num-workers", "0",
    ]  # fmt: skip


def run(cmd: list[str], env: dict[str, str]) -> Result:
    done = run_measured(cmd, env)
    speed = re.search(r"Evaluated [0-9,]+ tokens in [0-9.]+s \(([0-9.]+) tokens/s\)", done.output)
    loss = re.search(r"Loss \(base 2\): ([0-9.]+)", done.output)
    if speed is None or loss is None:
        sys.exit(f"{cmd[0]} failed:\n{done.output[-3000:]}")
    return Result(float(speed.group(1)), done.wall_s, done.peak_rss_mib, float(loss.group(1)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subset", default="train")
    p.add_argument("--context-window", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    fs = require_fairseq_bin("fairseq-eval-lm")
    env = thread_env(args.threads)
    tools = {"fairseq": [str(fs / "fairseq-eval-lm")], "seqloom": [*SEQLOOM, "eval-lm"]}
    results: dict[str, list[Result]] = {name: [] for name in tools}
    for _ in range(args.repeats):
        for name, exe in tools.items():
            results[name].append(run(exe + command(args.subset, args.context_window), env))
    best = {name: max(runs, key=lambda r: r.tokens_per_s) for name, runs in results.items()}
    print(f"{'tool':10} {'tokens/s':>10} {'wall s':>8} {'peak MiB':>10} {'loss':>8}")
    for name, r in best.items():
        print(f"{name:10} {r.tokens_per_s:10.1f} {r.wall_s:8.1f} {r.peak_rss_mib:10.1f} {r.loss:8.4f}")
    f, s = best["fairseq"], best["seqloom"]
    print(f"speed ratio seqloom/fairseq: {s.tokens_per_s / f.tokens_per_s:.2f}x (target >= 1.3x); wall ratio "
          f"{s.wall_s / f.wall_s:.2f}; peak memory ratio {s.peak_rss_mib / f.peak_rss_mib:.2f} (target <= 1); "
          f"loss {s.loss:.4f} vs {f.loss:.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
