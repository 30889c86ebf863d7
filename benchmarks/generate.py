"""Generation speed: fairseq-generate vs ``seqloom generate`` on the same checkpoint and test set.

Both run as separate processes with the same thread count (default 2) and options (default beam 5,
batch size 32); each reports its own generation time (model loading excluded, as fairseq's
``Translated ... in Xs`` line does). Runs alternate between the toolkits and the best of ``--repeat`` is
kept, which makes the comparison fairer on a shared machine; the median of the back-to-back pairs' ratios
is printed too (the machine's speed drifts between minutes, less within a pair). The hypotheses of both are compared too.
seqloom also runs with ``--decode-threads`` equal to the thread count (that many batches at once, one
intra-op thread each), reported on its own line.
CTranslate2 runs as well when ``--ct2-model`` names a model converted from the same checkpoint
(``ct2-fairseq-converter``), in the interpreter ``--ct2-python`` (default ``../peer-venvs/ct2``); it is timed
around ``translate_batch`` alone, best of ``--repeat`` runs, in both of its thread layouts (``inter_threads``
1 with all threads inside each batch, and one batch per thread), each compared with seqloom's like layout.

    python benchmarks/generate.py [--threads 2] [--repeat 3] [--beam 5]

fairseq-generate is found from ``$FAIRSEQ_BIN`` (its path or its bin/ folder), else ``fairseq-generate``
on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "fixtures" / "fairseq" / "mt"
TIMING = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s")


@dataclass
class Result:
    name: str
    sentences: int
    tokens: int
    seconds: float
    hypotheses: dict[str, str]

    @property
    def sentences_per_s(self) -> float:
        return self.sentences / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def fairseq_bin() -> str:
    found = os.environ.get("FAIRSEQ_BIN") or shutil.which("fairseq-generate") or "/work/peer-venvs/fs/bin"
    path = Path(found)
    return str(path / "fairseq-generate") if path.is_dir() else str(path)


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    return env


def run_cli(name: str, command: list[str], threads: int) -> Result:
    proc = subprocess.run(command, capture_output=True, text=True, env=thread_env(threads), check=False)
    match = TIMING.search(proc.stderr) or TIMING.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        sys.exit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    hyps = {}
    for line in proc.stdout.splitlines():
        if line.startswith("H-"):
            key, _, text = line.split("\t")
            hyps.setdefault(key, text)
    sentences, tokens, seconds = int(match[1].replace(",", "")), int(match[2].replace(",", "")), float(match[3])
    return Result(name, sentences, tokens, seconds, hyps)


def generate_args(args: argparse.Namespace) -> list[str]:
    return [str(args.data), "--path", str(args.path), "--gen-subset", args.subset, "--beam", str(args.beam),
            "--batch-size", str(args.batch_size), "--no-progress-bar"]  # fmt: skip


CT2_SCRIPT = """
import json, sys, time
import ctranslate2
job = json.load(open(sys.argv[1]))
translator = ctranslate2.Translator(job["model"], device="cpu", inter_threads=job["inter"], intra_threads=job["intra"])
start = time.perf_counter()
out = translator.translate_batch(job["batch"], beam_size=job["beam"], max_batch_size=job["batch_size"],
                                 max_decoding_length=200)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "hypotheses": [r.hypotheses[0] for r in out]}))
"""


def run_ct2(args: argparse.Namespace, *, inter: int) -> Result | None:
    """CTranslate2 on the binarized test sources (same ids, same order), beam search, in ``--ct2-python``
    (its own environment, as ../shared/peers/README.md installs it)."""
    if args.ct2_model is None:
        return None
    sys.path.insert(0, str(REPO / "src"))
    from seqloom.data.dictionary import Dictionary
    from seqloom.data.formats import make_dataset

    src_dict = Dictionary.load(Path(args.data) / "dict.en.txt")
    source = make_dataset(str(Path(args.data) / f"{args.subset}.en-es.en"), "mmap")
    batch = [[src_dict[i] for i in source[k].tolist()[:-1]] for k in range(len(source))]
    job = {"model": str(args.ct2_model), "inter": inter, "intra": max(1, args.threads // inter), "beam": args.beam,
           "batch_size": args.batch_size, "batch": batch}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(job, f)
        f.flush()
        proc = subprocess.run([args.ct2_python, "-c", CT2_SCRIPT, f.name], capture_output=True, text=True,
                              env=thread_env(args.threads), check=False)  # fmt: skip
    if proc.returncode != 0:
        print(f"ctranslate2 failed, skipping it:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    done = json.loads(proc.stdout.strip().splitlines()[-1])
    hyps = done["hypotheses"]
    tokens = sum(len(h) + 1 for h in hyps)  # + </s>, as fairseq counts
    name = "ctranslate2" if inter == 1 else "ctranslate2-inter"
    return Result(name, len(hyps), tokens, done["seconds"], {f"H-{k}": " ".join(h) for k, h in enumerate(hyps)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=FIXTURE / "data-bin")
    parser.add_argument("--path", default=FIXTURE / "checkpoints" / "checkpoint_best.pt")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each toolkit; the fastest counts")
    parser.add_argument("--ct2-model", default=None, help="a CTranslate2 model converted from --path")
    parser.add_argument("--ct2-python", default=str(REPO.parent / "peer-venvs" / "ct2" / "bin" / "python"),
                        help="the interpreter that has ctranslate2 (default ../peer-venvs/ct2)")  # fmt: skip
    args = parser.parse_args()

    common = generate_args(args)
    seqloom = [sys.executable, "-m", "seqloom.cli.generate", *common, "--cpu"]
    commands = {"fairseq": [fairseq_bin(), *common, "--cpu"], "seqloom": seqloom}
    if args.threads > 1:
        commands["seqloom-threads"] = [*seqloom, "--decode-threads", str(args.threads)]
    best: dict[str, Result] = {}
    ratios: dict[str, list[float]] = {name: [] for name in commands if name != "fairseq"}
    for rep in range(args.repeat):
        seconds = {}
        for name, command in commands.items():
            result = run_cli(name, command, args.threads)
            seconds[name] = result.seconds
            if name not in best or result.seconds < best[name].seconds:
                best[name] = result
        for name in ratios:
            ratios[name].append(seconds["fairseq"] / seconds[name])
        print(f"run {rep + 1}: " + ", ".join(f"{name} {t:.2f}s" for name, t in seconds.items()), file=sys.stderr)
    for name, values in ratios.items():
        print(f"median over the {len(values)} back-to-back runs: {name} / fairseq {statistics.median(values):.2f}x "
              f"({', '.join(f'{r:.2f}' for r in values)})")  # fmt: skip
    layouts = [1, args.threads] if args.threads > 1 else [1]
    for _ in range(args.repeat if args.ct2_model is not None else 0):  # best of as many runs as the others had
        for inter in layouts:
            ct2 = run_ct2(args, inter=inter)
            if ct2 is not None and (ct2.name not in best or ct2.seconds < best[ct2.name].seconds):
                best[ct2.name] = ct2
    report(best, args)
    return 0


def report(best: dict[str, Result], args: argparse.Namespace) -> None:
    print(f"beam {args.beam}, batch size {args.batch_size}, {args.threads} threads, best of {args.repeat} runs")
    print(f"{'toolkit':12s} {'sentences':>9s} {'tokens':>7s} {'seconds':>8s} {'sent/s':>8s} {'tok/s':>9s}")
    for r in best.values():
        print(f"{r.name:12s} {r.sentences:9d} {r.tokens:7d} {r.seconds:8.2f} {r.sentences_per_s:8.2f} "
              f"{r.tokens_per_s:9.1f}")  # fmt: skip
    fs = best["fairseq"]
    for name in ("seqloom", "seqloom-threads"):
        if name in best:
            sl = best[name]
            same = sum(fs.hypotheses.get(k) == v for k, v in sl.hypotheses.items())
            print(f"{name} / fairseq: {sl.sentences_per_s / fs.sentences_per_s:.2f}x sentences/s, "
                  f"{sl.tokens_per_s / fs.tokens_per_s:.2f}x tokens/s (target >= 2x); identical top hypotheses: "
                  f"{same}/{len(fs.hypotheses)}")  # fmt: skip
    for ct_name, sl_name in (("ctranslate2", "seqloom"), ("ctranslate2-inter", "seqloom-threads")):
        if ct_name in best and sl_name in best:
            ct, sl = best[ct_name], best[sl_name]
            same = sum(sl.hypotheses.get(k) == v for k, v in ct.hypotheses.items())
            print(f"{ct_name} / {sl_name}: {ct.sentences_per_s / sl.sentences_per_s:.2f}x sentences/s "
                  f"(target <= 1.5x); identical top hypotheses: {same}/{len(ct.hypotheses)}")  # fmt: skip
    ct2_runs = [best[name] for name in ("ctranslate2", "ctranslate2-inter") if name in best]
    sl_runs = [best[name] for name in ("seqloom", "seqloom-threads") if name in best]
    if ct2_runs:
        fastest_ct2 = min(ct2_runs, key=lambda r: r.seconds)
        fastest_sl = min(sl_runs, key=lambda r: r.seconds)
        print(
            f"fastest of each: {fastest_ct2.name} / {fastest_sl.name}: "
            f"{fastest_ct2.sentences_per_s / fastest_sl.sentences_per_s:.2f}x sentences/s (target <= 1.5x)"
        )


if __name__ == "__main__":
    sys.exit(main())
