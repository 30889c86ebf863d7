"""BART against fairseq: denoising training words/s (same command) and ``fill_mask`` sentences/s (same model).

1. Training: fairseq's fixture recipe (``bart_base`` shrunk to 2+2 layers d64, span-poisson masking 0.3,
   sentence permutation, ``--tokens-per-sample 128 --max-tokens 2048``) for ``--max-update`` updates under
   ``fairseq-train`` and ``seqloom train``, each a fresh process with ``--threads`` threads, validation off.
   Words/s = target tokens of all updates / time in the epochs (from the JSON ``train`` line); also the user
   CPU seconds of the whole process (``wait4``), a load-insensitive figure on a shared machine.
2. fill_mask: each hub in its own process loads the fixture's BART (fairseq's with the workaround of
   ``bart/README.md``, its from_pretrained failing), warms up, then fills one ``<mask>`` per sentence of
   ``--sentences`` raw English test sentences in one call (``topk=3``, batched by the checkpoint's
   ``--max-tokens``). Loading is not timed. Reports sentences/s, the ratio and how many top-1 fillings agree.

Targets: training >= 1.3x, fill_mask >= 2x.

    python benchmarks/bart.py [--max-update 60] [--sentences 200] [--threads 1] [--repeat 1] [--skip-train|--skip-fill]

fairseq is found through ``$FAIRSEQ_BIN`` or ``../peer-venvs/fs/bin``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import FIXTURES, REPO, SEQLOOM, require_fairseq_bin, run_measured, thread_env, train_words_per_second

GPT2 = REPO.parent / "shared" / "data" / "gpt2-bpe"


def recipe(save_dir: Path, max_update: int) -> list[str]:
    return [
        str(FIXTURES / "bart" / "data-bin"), "--cpu", "--task", "denoising", "--arch", "bart_base",
        "--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "64", "--decoder-embed-dim", "64",
        "--encoder-ffn-embed-dim", "128", "--decoder-ffn-embed-dim", "128", "--encoder-attention-heads", "4",
        "--decoder-attention-heads", "4", "--mask", "0.3", "--mask-random", "0.1", "--poisson-lambda", "3.5",
        "--permute-sentences", "1", "--mask-length", "span-poisson", "--replace-length", "1", "--rotate", "0",
        "--tokens-per-sample", "128", "--max-tokens", "2048", "--max-update", str(max_update),
        "--criterion", "cross_entropy", "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay",
        "--total-num-update", str(max_update), "--warmup-updates", "20", "--seed", "1", "--log-format", "json",
        "--log-interval", "10", "--num-workers", "0", "--no-save", "--disable-validation", "--save-dir", str(save_dir),
    ]  # fmt: skip


def train_figures(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(words/s over the epochs, user CPU seconds of the process)."""
    done = run_measured(cmd, env)
    return train_words_per_second(done.output), done.user_s


def masked_sentences(count: int) -> list[str]:
    """Raw English test sentences, the middle word of each replaced by ``<mask>``."""
    lines = (FIXTURES / "mt" / "text" / "test.en").read_text(encoding="utf-8").splitlines()
    out = []
    for line in (lines * (count // len(lines) + 1))[:count]:
        words = line.split()
        words[len(words) // 2] = "<mask>"
        out.append(" ".join(words))
    return out


def fill_worker(toolkit: str, sentences: list[str], threads: int) -> dict[str, object]:
    """Runs inside the toolkit's process: load (untimed), warm up, time one batched ``fill_mask``."""
    import torch

    torch.set_num_threads(threads)
    files = {"gpt2_encoder_json": str(GPT2 / "encoder.json"), "gpt2_vocab_bpe": str(GPT2 / "vocab.bpe")}
    model_dir = str(FIXTURES / "bart" / "model")
    if toolkit == "fairseq":  # fairseq's from_pretrained fails on this checkpoint: bart/README.md's workaround
        from fairseq import checkpoint_utils
        from fairseq.models.bart import BARTHubInterface
        from omegaconf import DictConfig, open_dict

        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [model_dir + "/model.pt"],
            arg_overrides={"data": model_dir, "load_checkpoint_heads": True, "sample_break_mode": "eos"},
        )
        with open_dict(cfg):
            cfg.bpe = DictConfig({"_name": "gpt2", **files})
        hub = BARTHubInterface(cfg, task, models[0])
    else:
        from seqloom.hub import BARTModel

        hub = BARTModel.from_pretrained(model_dir, data_name_or_path=model_dir, **files)
    hub.eval()
    with torch.no_grad():
        hub.fill_mask(sentences[:8], topk=3)
        start = time.perf_counter()
        out = hub.fill_mask(sentences, topk=3)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "top1": [r[0][0] for r in out]}


def run_fill(python: str, toolkit: str, sentences: list[str], threads: int, env: dict[str, str]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(sentences, f)
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import bart; "
            f"r = bart.fill_worker({toolkit!r}, json.load(open({f.name!r})), {threads}); print('RESULT' + json.dumps(r))")  # fmt: skip
    proc = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True)
    os.unlink(f.name)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{toolkit} fill_mask failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT") :])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-update", type=int, default=60)
    p.add_argument("--sentences", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-fill", action="store_true")
    p.add_argument("--repeat", type=int, default=1, help="alternating runs of each tool; medians count")
    args = p.parse_args()
    fs = require_fairseq_bin("fairseq-train")
    threads = str(args.threads)
    env = thread_env(args.threads)
    if not args.skip_train:
        train: dict[str, list[tuple[float, float]]] = {"fairseq": [], "seqloom": []}
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.repeat):
                for name, exe in (
                    ("fairseq", [str(fs / "fairseq-train")]),
                    ("seqloom", [*SEQLOOM, "train"]),
                ):
                    train[name].append(train_figures(exe + recipe(Path(tmp) / f"{name}{rep}", args.max_update), env))
        ratios = [s[0] / f[0] for f, s in zip(train["fairseq"], train["seqloom"])]
        print(f"denoising training, {args.max_update} updates, {threads} thread(s), {args.repeat} alternating run(s):")
        for name, runs in train.items():
            wps, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            print(f"  {name:8} {wps:9.1f} words/s  {cpu:7.1f} user CPU s (medians)")
        cpu_ratio = statistics.median(f[1] / s[1] for f, s in zip(train["fairseq"], train["seqloom"]))
        print(f"  ratio seqloom/fairseq: {statistics.median(ratios):.2f}x words/s, median of the pairs "
              f"({', '.join(f'{r:.2f}' for r in ratios)}; target >= 1.3x), {cpu_ratio:.2f}x less CPU time")  # fmt: skip
    if args.skip_fill:
        return 0
    sentences = masked_sentences(args.sentences)
    fills: dict[str, list[dict]] = {"fairseq": [], "seqloom": []}
    for _ in range(args.repeat):
        for name, py in (("fairseq", str(fs / "python")), ("seqloom", sys.executable)):
            fills[name].append(run_fill(py, name, sentences, args.threads, env))
    rates = {name: [len(sentences) / r["seconds"] for r in runs] for name, runs in fills.items()}
    ratios = [s / f for f, s in zip(rates["fairseq"], rates["seqloom"])]
    agree = sum(a == b for a, b in zip(fills["fairseq"][0]["top1"], fills["seqloom"][0]["top1"]))
    print(f"fill_mask, {len(sentences)} sentences, topk 3, {args.repeat} alternating run(s):")
    for name, rate in rates.items():
        print(f"  {name:8} {statistics.median(rate):9.1f} sentences/s (median)")
    print(f"  ratio seqloom/fairseq: {statistics.median(ratios):.2f}x, median of the pairs "
          f"({', '.join(f'{r:.2f}' for r in ratios)}; target >= 2x); top-1 fillings equal: {agree}/{len(sentences)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
