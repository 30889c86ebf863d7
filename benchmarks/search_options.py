"""Search options against fairseq: shallow fusion with a language model, and lexically constrained decoding.

1. ``--lm-path``/``--lm-weight 0.3``: fairseq-generate and ``seqloom generate`` on the mt fixture's test set
   (beam 5, batch 32) with the tiny language model of ``tests/fixtures/lm_fusion``. fairseq re-runs the
   language model over the whole prefix at every step; seqloom decodes it with a KV cache.
2. ``--constraints ordered``: fairseq-interactive and ``seqloom interactive`` on the nine constrained inputs
   of ``tests/fixtures/constraints`` repeated ``--copies`` times (beam 5, 8 lines per batch).

Each tool runs in its own process with ``--threads`` threads; the figure is the tool's own timing line
(model loading excluded), the best of ``--repeat`` alternating runs, and the hypotheses are compared.

    python benchmarks/search_options.py [--threads 2] [--repeat 2] [--copies 4]
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from pathlib import Path

from _common import FIXTURES, REPO, SEQLOOM, require_fairseq_bin, run_measured, thread_env

MT = FIXTURES / "mt"
TRANSLATED = re.compile(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s")
INTERACTIVE = re.compile(r"translation time: ([\d.]+)")


def hyps(output: str) -> list[tuple[str, float, str]]:
    """(id, score, text) of the H- lines."""
    rows = [line.split("\t") for line in output.splitlines() if line.startswith("H-")]
    return [(r[0], float(r[1]), r[2] if len(r) > 2 else "") for r in rows]


def agree(a: tuple[str, float, str], b: tuple[str, float, str]) -> bool:
    """Same sentence and text, scores within 1e-4 (float32 sums in another order)."""
    return a[0] == b[0] and a[2] == b[2] and abs(a[1] - b[1]) <= 1e-4


def fusion(args: argparse.Namespace, fs_bin: Path, workdir: Path) -> None:
    data = workdir / "mt-bin"  # fairseq reads the language model's dictionary as dict.txt of the data folder
    shutil.copytree(MT / "data-bin", data)
    shutil.copyfile(MT / "data-bin" / "dict.es.txt", data / "dict.txt")
    common = [str(data), "--path", str(MT / "checkpoints" / "checkpoint_best.pt"), "--gen-subset", "test",
              "--beam", "5", "--batch-size", "32", "--lm-path", str(REPO / "tests" / "fixtures" / "lm_fusion" / "lm.pt"),
              "--lm-weight", "0.3"]  # fmt: skip
    tools = {"fairseq": [str(fs_bin / "fairseq-generate"), *common, "--cpu"],
             "seqloom": [*SEQLOOM, "generate", *common, "--no-progress-bar"]}  # fmt: skip
    best: dict[str, float] = {}
    outputs: dict[str, str] = {}
    for _ in range(args.repeat):
        for name, cmd in tools.items():
            done = run_measured(cmd, thread_env(args.threads))
            m = TRANSLATED.search(done.output)
            assert m is not None, done.output[-2000:]
            best[name] = min(best.get(name, float("inf")), float(m.group(3)))
            outputs[name] = done.output
    report("LM fusion (--lm-weight 0.3), 200 sentences", best, 200, outputs)


def constrained(args: argparse.Namespace, fs_bin: Path, workdir: Path) -> None:
    lines = (REPO / "tests" / "fixtures" / "constraints" / "input.en").read_text(encoding="utf-8").splitlines()
    source = workdir / "input.en"
    source.write_text("\n".join(lines * args.copies) + "\n", encoding="utf-8")
    common = [str(MT / "data-bin"), "--path", str(MT / "checkpoints" / "checkpoint_best.pt"), "--tokenizer", "moses",
              "--source-lang", "en", "--target-lang", "es", "--bpe", "subword_nmt", "--bpe-codes",
              str(MT / "text" / "bpe.codes"), "--beam", "5", "--constraints", "ordered", "--buffer-size", "8",
              "--batch-size", "8", "--input", str(source)]  # fmt: skip
    tools = {"fairseq": [str(fs_bin / "fairseq-interactive"), *common, "--cpu"],
             "seqloom": [*SEQLOOM, "interactive", *common]}  # fmt: skip
    best: dict[str, float] = {}
    outputs: dict[str, str] = {}
    for _ in range(args.repeat):
        for name, cmd in tools.items():
            done = run_measured(cmd, thread_env(args.threads))
            m = INTERACTIVE.search(done.output)
            assert m is not None, done.output[-2000:]
            best[name] = min(best.get(name, float("inf")), float(m.group(1)))
            outputs[name] = done.output
    report(f"constrained decoding (ordered), {len(lines) * args.copies} sentences", best, len(lines) * args.copies,
           outputs)  # fmt: skip


def report(title: str, best: dict[str, float], sentences: int, outputs: dict[str, str]) -> None:
    print(f"{title}, best of runs:")
    for name, seconds in best.items():
        print(f"  {name:8s} {seconds:7.2f}s  {sentences / seconds:8.2f} sentences/s")
    same = sum(agree(a, b) for a, b in zip(hyps(outputs["fairseq"]), hyps(outputs["seqloom"])))
    print(f"  seqloom / fairseq: {best['fairseq'] / best['seqloom']:.2f}x sentences/s; "
          f"hypotheses equal (text; score within 1e-4): {same}/{len(hyps(outputs['fairseq']))}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--copies", type=int, default=4, help="copies of the nine constrained inputs")
    args = parser.parse_args()
    fs_bin = require_fairseq_bin("fairseq-generate")
    with tempfile.TemporaryDirectory() as tmp:
        fusion(args, fs_bin, Path(tmp))
        constrained(args, fs_bin, Path(tmp))


if __name__ == "__main__":
    main()
