"""Times ``seqloom preprocess`` against ``fairseq-preprocess`` on the same corpus and flags.

Both run as a user runs them (a fresh process, import time included), alternately, ``--runs`` times
each; the median wall time gives lines per second (source + target lines binarized), and the peak
resident set size is the largest of the tool's processes (``wait4``'s ``ru_maxrss``, workers
included). The outputs of the two tools are also compared byte for byte.

    python benchmarks/preprocess.py [--workers 2] [--repeat 1] [--runs 3]

fairseq is found through ``$FAIRSEQ_BIN`` or ``../peer-venvs/fs/bin`` (see ../shared/peers/README.md).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import REPO, fairseq_bin

DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "bible-en-es"


@dataclass
class Run:
    """One timed run of one tool."""

    wall_s: float
    cpu_s: float  # user + system time of the tool and its workers (less sensitive to a busy machine)
    peak_rss_mib: float


def make_corpus(src_dir: Path, out: Path, src: str, tgt: str, repeat: int) -> int:
    """Copies train (``repeat`` times over) and valid into ``out``; returns the number of lines binarized."""
    out.mkdir(parents=True)
    lines = 0
    for lang in (src, tgt):
        data = (src_dir / f"train.{lang}").read_bytes()
        (out / f"train.{lang}").write_bytes(data * repeat)
        shutil.copy(src_dir / f"valid.{lang}", out / f"valid.{lang}")
        lines += data.count(b"\n") * repeat + (src_dir / f"valid.{lang}").read_bytes().count(b"\n")
    return lines


def timed(cmd: list[str], env: dict[str, str]) -> Run:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode(errors='replace')[-2000:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)  # ru_maxrss: KiB on Linux


def same_outputs(a: Path, b: Path) -> bool:
    names = sorted(n for n in os.listdir(a) if n != "preprocess.log")
    if names != sorted(n for n in os.listdir(b) if n != "preprocess.log"):
        return False
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder with train.{src,tgt} and valid.*")
    p.add_argument("--src", default="en")
    p.add_argument("--tgt", default="es")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1, help="concatenate the train files this many times")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    fs_bin = fairseq_bin("fairseq-preprocess")
    if fs_bin is None:
        print("peer not installed, skipping")
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        root = Path(tmp)
        lines = make_corpus(args.corpus, root / "text", args.src, args.tgt, args.repeat)
        flags = ["--source-lang", args.src, "--target-lang", args.tgt, "--trainpref", str(root / "text/train")]
        flags += ["--validpref", str(root / "text/valid"), "--joined-dictionary", "--workers", str(args.workers)]
        tools = {
            "fairseq": [str(fs_bin / "fairseq-preprocess")],
            "seqloom": [sys.executable, "-m", "seqloom", "preprocess", "--no-progress-bar"],
        }
        runs: dict[str, list[Run]] = {name: [] for name in tools}
        for k in range(args.runs):
            for name, cmd in tools.items():
                dest = root / f"{name}-{k}"
                runs[name].append(timed([*cmd, *flags, "--destdir", str(dest)], env))
        identical = same_outputs(root / "fairseq-0", root / "seqloom-0")
    report(runs, lines, args, identical)
    return 0


def report(runs: dict[str, list[Run]], lines: int, args: argparse.Namespace, identical: bool) -> None:
    print(f"corpus: {args.corpus} (train x{args.repeat} + valid), {lines} lines (source + target), "
          f"--workers {args.workers}, {args.runs} runs each, median wall time")  # fmt: skip
    speed: dict[str, float] = {}
    cpu: dict[str, float] = {}
    rss: dict[str, float] = {}
    for name, rs in runs.items():
        wall = statistics.median(r.wall_s for r in rs)
        cpu[name] = statistics.median(r.cpu_s for r in rs)
        speed[name], rss[name] = lines / wall, max(r.peak_rss_mib for r in rs)
        print(
            f"  {name:8s} {wall:7.2f} s wall  {speed[name]:10,.0f} lines/s  {cpu[name]:7.2f} s CPU"
            f"  peak RSS {rss[name]:7.1f} MiB"
        )
    print(f"  speed ratio seqloom/fairseq: {speed['seqloom'] / speed['fairseq']:.2f}x (target >= 3x)")
    print(f"  CPU time ratio fairseq/seqloom: {cpu['fairseq'] / cpu['seqloom']:.2f}x")
    print(f"  peak RSS ratio seqloom/fairseq: {rss['seqloom'] / rss['fairseq']:.2f} (target <= 1)")
    print(f"  outputs byte-identical: {identical}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    sys.exit(main())
