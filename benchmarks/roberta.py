"""RoBERTa against fairseq: masked-LM training words/s (same command, seed, data) and the hub's ``fill_mask`` and
``extract_features`` of N sentences (same model).

1. Training: the RoBERTa README's pretraining command (``roberta_base`` shrunk with ``--encoder-layers`` etc.,
   ``--sample-break-mode complete --tokens-per-sample 128``) on tests/fixtures/roberta's data for
   ``--max-update`` updates under ``fairseq-train`` and ``seqloom train``, each a fresh process with
   ``--threads`` threads. Words/s = tokens of all updates / time in the epochs (the JSON ``train`` line); also
   the user CPU seconds of the whole process and the last validation loss of each (same data, same seed).
2. Hub: each toolkit's process loads tests/fixtures/roberta/gpt2/model.pt (untimed), warms up, then runs
   ``fill_mask`` (topk 3) on N sentences with one ``<mask>`` each, one call per sentence as fairseq's hub
   takes them, and ``extract_features`` of the same N sentences one by one. Reports sentences/s and the ratio.

Targets: training >= 1.3x, fill_mask / extract_features >= 2x.

    python benchmarks/roberta.py [--max-update 100] [--sentences 1000] [--threads 1] [--repeat 1]
                                 [--size 2,32,64,2] [--skip-train|--skip-hub]

fairseq is found through ``$FAIRSEQ_BIN`` or ``../peer-venvs/fs/bin``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, SEQLOOM, require_fairseq_bin, run_measured, thread_env, train_words_per_second

GPT2 = REPO.parent / "shared" / "data" / "gpt2-bpe"
TEXT = REPO.parent / "shared" / "data" / "bible-en-es" / "test.en"
OWN = REPO / "tests" / "fixtures" / "roberta" / "gpt2"


def recipe(data: Path, save_dir: Path, max_update: int, size: list[str]) -> list[str]:
    layers, dim, ffn, heads = size
    return [
        str(data), "--cpu", "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base",
        "--encoder-layers", layers, "--encoder-embed-dim", dim, "--encoder-ffn-embed-dim", ffn,
        "--encoder-attention-heads", heads, "--sample-break-mode", "complete", "--tokens-per-sample", "128",
        "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6", "--clip-norm", "0.0",
        "--lr-scheduler", "polynomial_decay", "--lr", "0.0005", "--warmup-updates", "10",
        "--total-num-update", str(max_update), "--dropout", "0.1", "--attention-dropout", "0.1",
        "--weight-decay", "0.01", "--batch-size", "16", "--update-freq", "1", "--max-update", str(max_update),
        "--seed", "1", "--log-format", "json", "--log-interval", "10", "--num-workers", "0", "--no-save",
        "--save-dir", str(save_dir),
    ]  # fmt: skip


def train_figures(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, float]:
    """(words/s over the epochs, user CPU seconds of the process, last validation loss, peak resident MiB)."""
    done = run_measured(cmd, env)
    losses = re.findall(r'"valid_loss": "([0-9.]+)"', done.output)
    loss = float(losses[-1]) if losses else float("nan")
    return train_words_per_second(done.output), done.user_s, loss, done.peak_rss_mib


def sentences(count: int) -> list[str]:
    lines = [line for line in TEXT.read_text(encoding="utf-8").splitlines() if len(line.split()) > 2]
    return [lines[i % len(lines)] for i in range(count)]


def hub_worker(toolkit: str, texts: list[str], threads: int) -> dict[str, object]:
    """Runs inside the toolkit's process: load (untimed), warm up, time fill_mask and extract_features."""
    import torch

    torch.set_num_threads(threads)
    files = {"gpt2_encoder_json": str(GPT2 / "encoder.json"), "gpt2_vocab_bpe": str(GPT2 / "vocab.bpe")}
    if toolkit == "fairseq":
        from fairseq.models.roberta import RobertaModel
    else:
        from seqloom.hub import RobertaModel  # type: ignore[no-redef]
    hub = RobertaModel.from_pretrained(str(OWN), "model.pt", ".", bpe="gpt2", **files)
    hub.eval()
    masked = []
    for line in texts:
        words = line.split()
        words[len(words) // 2] = "<mask>"
        masked.append(" ".join(words))
    with torch.no_grad():
        for text in masked[:8]:
            hub.fill_mask(text, topk=3)
        start = time.perf_counter()
        top1 = [hub.fill_mask(text, topk=3)[0][0] for text in masked]
        fill_s = time.perf_counter() - start
        tokens = [hub.encode(text) for text in texts]
        start = time.perf_counter()
        for t in tokens:
            hub.extract_features(t)
        features_s = time.perf_counter() - start
    return {"fill_s": fill_s, "features_s": features_s, "top1": top1}


def run_hub(python: str, toolkit: str, texts: list[str], threads: int, env: dict[str, str]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(texts, f)
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import roberta; "
            f"r = roberta.hub_worker({toolkit!r}, json.load(open({f.name!r})), {threads}); "
            "print('RESULT' + json.dumps(r))")  # fmt: skip
    proc = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True)
    os.unlink(f.name)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{toolkit} hub run failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT") :])


def bench_train(args: argparse.Namespace, fs: Path, env: dict[str, str]) -> None:
    size = args.size.split(",")
    runs: dict[str, list[tuple[float, float, float, float]]] = {"fairseq": [], "seqloom": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            for name, exe in (("fairseq", [str(fs / "fairseq-train")]), ("seqloom", [*SEQLOOM, "train"])):
                cmd = exe + recipe(OWN, Path(tmp) / f"{name}{rep}", args.max_update, size)
                runs[name].append(train_figures(cmd, env))
    ratios = [s[0] / f[0] for f, s in zip(runs["fairseq"], runs["seqloom"])]
    print(f"masked-LM training, {args.max_update} updates, size {args.size}, {args.threads} thread(s):")
    for name, rows in runs.items():
        wps, cpu = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        peak = max(r[3] for r in rows)
        print(
            f"  {name:8} {wps:9.1f} words/s  {cpu:7.1f} user CPU s  peak {peak:7.1f} MiB  valid loss {rows[-1][2]:.3f}"
        )
    peaks = {name: max(r[3] for r in rows) for name, rows in runs.items()}
    print(
        f"  ratio seqloom/fairseq: {statistics.median(ratios):.2f}x words/s (target >= 1.3x); "
        f"peak memory {peaks['seqloom'] / peaks['fairseq']:.2f}x (target <= 1)"
    )


def bench_hub(args: argparse.Namespace, fs: Path, env: dict[str, str]) -> None:
    texts = sentences(args.sentences)
    runs: dict[str, list[dict]] = {"fairseq": [], "seqloom": []}
    for _ in range(args.repeat):
        for name, py in (("fairseq", str(fs / "python")), ("seqloom", sys.executable)):
            runs[name].append(run_hub(py, name, texts, args.threads, env))
    agree = sum(a == b for a, b in zip(runs["fairseq"][0]["top1"], runs["seqloom"][0]["top1"]))
    for what, key in (("fill_mask (topk 3)", "fill_s"), ("extract_features", "features_s")):
        rates = {name: statistics.median(len(texts) / r[key] for r in rows) for name, rows in runs.items()}
        print(f"{what}, {len(texts)} sentences one by one: fairseq {rates['fairseq']:.1f}/s, seqloom "
              f"{rates['seqloom']:.1f}/s, ratio {rates['seqloom'] / rates['fairseq']:.2f}x (target >= 2x)")  # fmt: skip
    print(f"top-1 fillings equal: {agree}/{len(texts)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-update", type=int, default=100)
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1, help="alternating runs of each tool; medians count")
    p.add_argument("--size", default="2,32,64,2", help="layers,embed dim,FFN dim,heads of the trained model")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-hub", action="store_true")
    args = p.parse_args()
    fs = require_fairseq_bin("fairseq-train")
    env = thread_env(args.threads)
    if not args.skip_train:
        bench_train(args, fs, env)
    if not args.skip_hub:
        bench_hub(args, fs, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
