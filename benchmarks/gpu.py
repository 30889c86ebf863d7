"""seqloom on one CUDA GPU: training words/s and generation sentences/s per precision mode.

Makes a synthetic translation corpus (``--pairs`` pairs, 10-40 words, the target a word-for-word mapping of
the reversed source), binarizes it, trains fairseq's ``transformer`` (base: 6+6 layers, d512) for
``--max-update`` updates in each mode (fp32, ``--bf16``, ``--amp``, ``--bf16 --compile``), then translates
the test split with beam 5 in fp32, ``--fp16`` and ``--bf16``. Prints each figure and its ratio to fp32's
(the peer in the same run: fairseq is not installable on a machine without a package registry).

    python benchmarks/gpu.py [--pairs 40000] [--max-update 200] [--modes fp32,bf16,amp,bf16-compile]

Needs CUDA; each command runs in a fresh process, as a user runs it.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
from pathlib import Path

from _common import SEQLOOM, run_measured, thread_env, train_words_per_second

TRAIN_MODES = {"fp32": [], "bf16": ["--bf16"], "amp": ["--amp"], "bf16-compile": ["--bf16", "--compile"]}
GENERATE_MODES = {"fp32": [], "fp16": ["--fp16"], "bf16": ["--bf16"]}


def write_corpus(root: Path, pairs: int, vocab: int) -> None:
    rng = random.Random(1)
    mapping = list(range(vocab))
    rng.shuffle(mapping)
    for split, n in (("train", pairs), ("valid", 500), ("test", 1000)):
        with open(root / f"{split}.src", "w") as src, open(root / f"{split}.tgt", "w") as tgt:
            for _ in range(n):
                words = [min(int(rng.paretovariate(1.1)), vocab - 1) for _ in range(rng.randint(10, 40))]
                src.write(" ".join(f"s{w}" for w in words) + "\n")
                tgt.write(" ".join(f"t{mapping[w]}" for w in reversed(words)) + "\n")


def train_command(data: Path, save: Path, max_update: int, extra: list[str]) -> list[str]:
    return [
        *SEQLOOM, "train", str(data), "--arch", "transformer", "--share-decoder-input-output-embed",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt",
        "--warmup-updates", "100", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--dropout", "0.1", "--max-tokens", "8192", "--max-update", str(max_update), "--seed", "1",
        "--log-format", "json", "--log-interval", "20", "--num-workers", "2", "--disable-validation",
        "--no-epoch-checkpoints", "--save-dir", str(save), "--save-interval-updates", str(max_update), *extra,
    ]  # fmt: skip


def generated_per_second(log: str) -> tuple[float, float]:
    m = re.search(r"\(([\d.]+) sentences/s, ([\d.]+) tokens/s\)", log)
    if m is None:
        sys.exit(f"no timing line in the generate log:\n{log[-2000:]}")
    return float(m.group(1)), float(m.group(2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=40000)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--max-update", type=int, default=200)
    p.add_argument("--modes", default=",".join(TRAIN_MODES))
    args = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA device")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    env = thread_env(4)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_corpus(root, args.pairs, args.vocab)
        data = root / "data-bin"
        run_measured([*SEQLOOM, "preprocess", "--source-lang", "src", "--target-lang", "tgt",
                      "--trainpref", str(root / "train"), "--validpref", str(root / "valid"),
                      "--testpref", str(root / "test"), "--destdir", str(data), "--workers", "4"], env)  # fmt: skip
        wps: dict[str, float] = {}
        for mode in args.modes.split(","):
            done = run_measured(train_command(data, root / mode, args.max_update, TRAIN_MODES[mode]), env)
            wps[mode] = train_words_per_second(done.output)
            print(f"train {mode:13} {wps[mode]:10.0f} words/s  {wps[mode] / wps[next(iter(wps))]:.2f}x  "
                  f"(wall {done.wall_s:.0f} s)", flush=True)  # fmt: skip
        ckpt = root / next(iter(wps)) / "checkpoint_last.pt"
        first = None
        for mode, flags in GENERATE_MODES.items():
            cmd = [*SEQLOOM, "generate", str(data), "--path", str(ckpt), "--gen-subset", "test", "--beam", "5"]
            done = run_measured([*cmd, "--batch-size", "128", "--quiet", "--no-progress-bar", *flags], env)
            sents, toks = generated_per_second(done.output)
            first = first or sents
            bleu = next((line for line in done.output.splitlines() if "BLEU4" in line), "")
            print(f"generate {mode:6} {sents:8.1f} sentences/s {toks:9.0f} tokens/s  {sents / first:.2f}x  "
                  f"{bleu.split(': ', 1)[-1][:40]}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
