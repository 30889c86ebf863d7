"""Times ``hub.translate()`` of 1,000 sentences: seqloom's hub against fairseq's, same model and options.

Each toolkit runs in its own process (fairseq's with the peer virtualenv's Python and
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), loads the fixture's mt checkpoint as fairseq's hub.json was made,
translates one sentence to warm up, then the timed list. Loading is not timed. The input is the
fixture's already tokenized and BPE'd text and no tokenizer/BPE is configured (the peer virtualenv has
neither sacremoses nor subword-nmt), so the timing covers batching, beam search and ``string``.
Prints sentences/s of each, the ratio, and how many translations agree.

    OMP_NUM_THREADS=1 python benchmarks/hub.py [--sentences 1000] [--beam 5] [--threads 1]

fairseq is found through ``$FAIRSEQ_PYTHON`` or ``../peer-venvs/fs/bin/python``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "fairseq" / "mt"


def fairseq_python() -> Path | None:
    for candidate in (os.environ.get("FAIRSEQ_PYTHON"), str(REPO.parent / "peer-venvs" / "fs" / "bin" / "python")):
        if candidate and Path(candidate).exists():
            probe = subprocess.run([candidate, "-c", "import fairseq"], capture_output=True)
            if probe.returncode == 0:
                return Path(candidate)
    return None


def worker(toolkit: str, sentences: list[str], beam: int, threads: int) -> dict[str, object]:
    """Runs inside the toolkit's process: load (untimed), warm up, time ``translate``."""
    import torch

    torch.set_num_threads(threads)
    if toolkit == "fairseq":
        from fairseq.models.transformer import TransformerModel
    else:
        from seqloom.hub import TransformerModel
    hub = TransformerModel.from_pretrained(
        str(FIXTURES / "checkpoints"),
        checkpoint_file="checkpoint_best.pt",
        data_name_or_path=str(FIXTURES / "data-bin"),
    )
    hub.eval()
    with torch.no_grad():
        hub.translate(sentences[:1], beam=beam)
        start = time.perf_counter()
        out = hub.translate(sentences, beam=beam)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "translations": out}


def run(toolkit: str, python: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [python, __file__, "--worker", toolkit, "--result", str(out), "--sentences", str(args.sentences),
               "--beam", str(args.beam), "--threads", str(args.threads)]  # fmt: skip
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{toolkit} worker failed:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text(encoding="utf-8"))


def load_sentences(n: int) -> list[str]:
    lines = (FIXTURES / "text" / "train.bpe.en").read_text(encoding="utf-8").splitlines()
    lines += (FIXTURES / "text" / "test.bpe.en").read_text(encoding="utf-8").splitlines()
    return [lines[i % len(lines)] for i in range(n)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--worker", choices=["seqloom", "fairseq"], help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    sentences = load_sentences(args.sentences)
    if args.worker:
        result = worker(args.worker, sentences, args.beam, args.threads)
        Path(args.result).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    ours = run("seqloom", sys.executable, args, env)
    print(f"seqloom: {args.sentences} sentences in {ours['seconds']:.2f}s = "
          f"{args.sentences / ours['seconds']:.1f} sentences/s (beam {args.beam}, {args.threads} thread(s))")  # fmt: skip
    peer = fairseq_python()
    if peer is None:
        print("peer not installed, skipping")
        return 0
    theirs = run("fairseq", str(peer), args, {**env, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    print(f"fairseq: {args.sentences} sentences in {theirs['seconds']:.2f}s = "
          f"{args.sentences / theirs['seconds']:.1f} sentences/s")  # fmt: skip
    same = sum(a == b for a, b in zip(ours["translations"], theirs["translations"]))
    print(f"speed ratio seqloom/fairseq: {theirs['seconds'] / ours['seconds']:.2f}x; "
          f"identical translations: {same}/{args.sentences}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
