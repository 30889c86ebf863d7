"""Runs the same training command under ``fairseq-train`` and ``seqloom train`` and compares them.

Both train fairseq's fixture recipe (transformer 2+2 layers d64 on ``mt/data-bin``, Adam, inverse_sqrt,
label smoothing 0.1, ``--max-tokens 2048``, ``--seed 1``) for ``--max-update`` updates on the CPU with
``--threads`` threads, as a user runs them (a fresh process each). Reported per tool: training words per
second (target tokens of all updates / time spent in the epochs, from the JSON ``train`` lines), the peak
resident set size (``wait4``'s ``ru_maxrss``) and the last validation loss. Targets: seqloom >= 1.3x
fairseq's words/s, <= its peak memory, a validation loss no worse.

    python benchmarks/train.py [--max-update 300] [--threads 2] [--model-dim 64] [--repeat 1]

With ``--repeat N`` the tools alternate N times and the run with the median words/s of each counts
(a shared machine's speed drifts by tens of percent from minute to minute).

fairseq is found through ``$FAIRSEQ_BIN`` or ``../peer-venvs/fs/bin``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import (
    FIXTURES,
    SEQLOOM,
    TrainResult,
    median_run,
    print_training,
    require_fairseq_bin,
    run_training,
    thread_env,
)


def recipe(data: Path, save_dir: Path, max_update: int, dim: int) -> list[str]:
    ffn = str(2 * dim)
    return [
        str(data), "--cpu", "--task", "translation", "--arch", "transformer",
        "--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", str(dim),
        "--decoder-embed-dim", str(dim), "--encoder-ffn-embed-dim", ffn, "--decoder-ffn-embed-dim", ffn,
        "--encoder-attention-heads", "4", "--decoder-attention-heads", "4", "--share-decoder-input-output-embed",
        "--dropout", "0.1", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "1e-3",
        "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "100", "--criterion", "label_smoothed_cross_entropy",
        "--label-smoothing", "0.1", "--max-tokens", "2048", "--max-update", str(max_update), "--seed", "1",
        "--log-format", "json", "--log-interval", "10", "--num-workers", "0", "--no-epoch-checkpoints",
        "--no-save", "--save-dir", str(save_dir),
    ]  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-update", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model-dim", type=int, default=64)
    p.add_argument("--repeat", type=int, default=1, help="alternating runs of each tool; the median counts")
    p.add_argument("--data", type=Path, default=FIXTURES / "mt" / "data-bin")
    args = p.parse_args()
    fs = require_fairseq_bin("fairseq-train")
    env = thread_env(args.threads)
    runs: dict[str, list[TrainResult]] = {"fairseq": [], "seqloom": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            for name, exe in (
                ("fairseq", [str(fs / "fairseq-train")]),
                ("seqloom", [*SEQLOOM, "train"]),
            ):
                cmd = exe + recipe(args.data, Path(tmp) / f"{name}{rep}", args.max_update, args.model_dim)
                runs[name].append(run_training(cmd, env))
            if args.repeat > 1:
                f, s = runs["fairseq"][-1], runs["seqloom"][-1]
                print(f"run {rep + 1}: fairseq {f.wps:.1f} words/s, seqloom {s.wps:.1f} words/s, {s.wps / f.wps:.2f}x")
    print_training({name: median_run(results) for name, results in runs.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
