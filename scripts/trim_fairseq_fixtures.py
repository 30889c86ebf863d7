"""Copies the part of fairseq's full reference fixtures that the tests read into ``tests/fixtures/fairseq``.

The full set (26 MB: shared/fixtures/fairseq, made with fairseq-fixed 0.12.3.1; see its README.md) holds
stderr logs, tokenized side files and a second copy of the BART checkpoint that no test reads. This keeps
every file some test opens (found by running the tests under ``strace -f -e trace=openat``), plus the
provenance (``commands.txt`` and the per-folder READMEs), links ``mt/checkpoints/checkpoint_best.pt`` to
``checkpoint_last.pt`` (fairseq wrote them byte-identical), and drops ``last_optimizer_state`` from every
checkpoint except ``mt/checkpoints/checkpoint_last.pt``, whose Adam state the optimizer, scheduler and
resume tests read. The GPT-2 BPE files the BART tests encode with go to ``tests/fixtures/gpt2-bpe``.

    python scripts/trim_fairseq_fixtures.py /path/to/shared/fixtures/fairseq

``tests/fixtures/fairseq/README.md`` is written by hand (it describes the trimmed set) and is left alone.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

# Every file of the full set that the tests read, as glob patterns relative to its root.
KEEP = [
    "commands.txt",
    "*/README.md",
    "*/*/README.md",
    "mt/checkpoints/checkpoint_best.pt",
    "mt/checkpoints/checkpoint_last.pt",
    "mt/checkpoints/train.log",
    "mt/data-bin/*",
    "mt/data-bin-raw/*",
    "mt/data-bin-separate/*",
    "mt/dict-only/*",
    "mt/hub.json",
    "mt/outputs/commands.txt",
    "mt/outputs/generate.*.txt.gz",
    "mt/outputs/interactive.beam5.txt",
    "mt/outputs/interactive.input.en",
    "mt/outputs/validate.valid.txt",
    "mt/text/bpe.codes",
    "mt/text/train.??",
    "mt/text/valid.??",
    "mt/text/test.??",
    "mt/text/*.bpe.??",
    "mt/text/train.tok.??",
    "mt/text/test.tok.es",
    "lm/checkpoints/*",
    "lm/data-bin/*",
    "lm/hub.json",
    "lm/outputs/eval-lm.*",
    "bart/data-bin/*",
    "bart/hub.json",
    "bart/model/*",
    "bart/text/*.bpe",
]
# The one checkpoint whose optimizer state a test reads (Adam moments, resuming fairseq's run).
WHOLE = {"mt/checkpoints/checkpoint_last.pt"}
# Byte-identical to another kept file in the full set: kept as a relative symlink to it (no second copy).
LINKS = {"mt/checkpoints/checkpoint_best.pt": "checkpoint_last.pt"}


def kept_files(source: Path) -> list[Path]:
    found = {p for pattern in KEEP for p in source.glob(pattern) if p.is_file()}
    return sorted(p.relative_to(source) for p in found)


def copy_checkpoint(src: Path, dst: Path, *, whole: bool) -> None:
    if whole:
        shutil.copyfile(src, dst)
        return
    state = torch.load(src, map_location="cpu", weights_only=False)
    state.pop("last_optimizer_state", None)  # fairseq leaves the key out under --no-save-optimizer-state too
    torch.save(state, dst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the full fixture folder (shared/fixtures/fairseq)")
    parser.add_argument("--dest", type=Path, default=REPO / "tests" / "fixtures" / "fairseq")
    args = parser.parse_args()
    if not (args.source / "mt" / "hub.json").is_file():
        print(f"error: {args.source} is not fairseq's full fixture folder (no mt/hub.json there)", file=sys.stderr)
        return 1
    for rel in kept_files(args.source):
        out = args.dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if str(rel) in LINKS:
            out.unlink(missing_ok=True)
            out.symlink_to(LINKS[str(rel)])
        elif rel.suffix == ".pt":
            copy_checkpoint(args.source / rel, out, whole=str(rel) in WHOLE)
        else:
            shutil.copyfile(args.source / rel, out)
    gpt2 = args.source.parents[1] / "data" / "gpt2-bpe"
    gpt2_dest = args.dest.parent / "gpt2-bpe"
    gpt2_dest.mkdir(parents=True, exist_ok=True)
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(gpt2 / name, gpt2_dest / name)
    total = sum(p.stat().st_size for p in args.dest.rglob("*") if p.is_file())
    print(f"{args.dest}: {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
