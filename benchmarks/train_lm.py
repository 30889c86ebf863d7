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
import sys
import tempfile
from pathlib import Path

from _common import FIXTURES, SEQLOOM, TrainResult, print_training, require_fairseq_bin, run_training, thread_env


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-update", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--data", type=Path, default=FIXTURES / "lm" / "data-bin")
    args = p.parse_args()
    fs = require_fairseq_bin("fairseq-train")
    env = thread_env(args.threads)
    tools = {"fairseq": [str(fs / "fairseq-train")], "seqloom": [*SEQLOOM, "train"]}
    results: dict[str, list[TrainResult]] = {name: [] for name in tools}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, exe in tools.items():
                results[name].append(run_training(exe + recipe(args.data, Path(tmp) / name, args.max_update), env))
    best = {name: max(runs, key=lambda r: r.wps) for name, runs in results.items()}
    print_training(best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
