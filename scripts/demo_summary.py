"""The demo's closing summary: what was trained, the test BLEU, three translations beside their references, and
where the outputs are.

    python3 scripts/demo_summary.py --checkpoint-dir demo-out/checkpoints \\
        --generated demo-out/generate/generate-test.txt \\
        --source examples/data/bible-en-es/test.en --reference examples/data/bible-en-es/test.es

``--generated`` is ``seqloom generate``'s output, run with ``--tokenizer moses --bpe subword_nmt``: its ``D-``
lines are detokenized text, scored here with sacreBLEU (its own 13a tokenization) against the untouched
reference file, the way published BLEU figures are computed.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

EXAMPLES = 3


@dataclass(frozen=True)
class TrainedModel:
    """What the checkpoint says about the run that made it."""

    arch: str
    layers: tuple[int, int]
    embed_dim: int
    parameters: int
    updates: int
    epochs: int
    seconds: float


def read_checkpoint(path: Path) -> TrainedModel:
    from seqloom.checkpoint.io import load_checkpoint

    state = load_checkpoint(path)
    args = state.get("args")
    cfg = vars(args) if args is not None else {**state["cfg"]["model"]}
    unique = {t.data_ptr(): t.numel() for t in state["model"].values()}  # tied embeddings are stored once
    extra = state.get("extra_state", {})
    history = state.get("optimizer_history") or [{}]
    return TrainedModel(
        arch=str(cfg.get("arch", "?")),
        layers=(int(cfg.get("encoder_layers", 0)), int(cfg.get("decoder_layers", 0))),
        embed_dim=int(cfg.get("encoder_embed_dim", 0)),
        parameters=sum(unique.values()),
        updates=int(history[-1].get("num_updates", 0)),
        epochs=int(extra.get("train_iterator", {}).get("epoch", 0)),
        seconds=float(extra.get("previous_training_time", 0.0)),
    )


def read_hypotheses(path: Path) -> dict[int, str]:
    """The ``D-<id>`` lines of a generate output: sentence id -> detokenized hypothesis."""
    hyps: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"D-(\d+)\t[^\t]*\t?(.*)$", line)
        if match:
            hyps.setdefault(int(match.group(1)), match.group(2))
    if not hyps:
        raise SystemExit(f"{path}: no D-<id> lines (is it the output of seqloom generate?)")
    return hyps


def test_bleu(hyps: dict[int, str], refs: list[str]) -> tuple[float, int]:
    """sacreBLEU's corpus score of the hypotheses against the references of the same ids, and their count."""
    import sacrebleu

    ids = sorted(i for i in hyps if i < len(refs))
    return sacrebleu.corpus_bleu([hyps[i] for i in ids], [[refs[i] for i in ids]]).score, len(ids)


def examples(hyps: dict[int, str], sources: list[str], refs: list[str], n: int = EXAMPLES) -> list[int]:
    """``n`` sentence ids spread over the test set (the same ones every run), of moderate length."""
    ids = [i for i in sorted(hyps) if i < len(refs) and 5 <= len(refs[i].split()) <= 25] or sorted(hyps)
    return [ids[(k * len(ids)) // n] for k in range(n)] if len(ids) >= n else ids


def _clip(text: str, width: int = 150) -> str:
    """One screen line at most (an untrained model repeats a word up to the length limit)."""
    return text if len(text) <= width else text[: width - 3] + "..."


def summary(
    model: TrainedModel, hyps: dict[int, str], sources: list[str], refs: list[str], outputs: dict[str, str]
) -> str:
    bleu, count = test_bleu(hyps, refs)
    enc, dec = model.layers
    lines = [
        f"trained:  {model.arch}, {enc}+{dec} layers, d{model.embed_dim}, {model.parameters / 1e6:.2f}M parameters; "
        f"{model.updates} updates ({model.epochs} epochs) in {model.seconds:.0f} s",
        f"test BLEU: {bleu:.2f} (sacreBLEU on detokenized text, {count} sentences)",
        "examples (source / reference / model):",
    ]
    for i in examples(hyps, sources, refs):
        source = sources[i] if i < len(sources) else ""
        lines += [f"  [{i}] {_clip(source)}", f"   ref: {_clip(refs[i])}", f"   out: {_clip(hyps[i])}"]
    lines.append("outputs:")
    lines += [f"  {what:<12} {where}" for what, where in outputs.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint-dir", required=True, type=Path, metavar="DIR")
    p.add_argument("--generated", required=True, type=Path, metavar="FILE", help="seqloom generate's output")
    p.add_argument("--source", required=True, type=Path, metavar="FILE", help="the raw source sentences")
    p.add_argument("--reference", required=True, type=Path, metavar="FILE", help="the raw reference sentences")
    p.add_argument("--output", action="append", default=[], metavar="WHAT=PATH", help="an output to list")
    args = p.parse_args(argv)
    model = read_checkpoint(args.checkpoint_dir / "checkpoint_last.pt")
    hyps = read_hypotheses(args.generated)
    sources = args.source.read_text(encoding="utf-8").splitlines()
    refs = args.reference.read_text(encoding="utf-8").splitlines()
    outputs = dict(item.split("=", 1) for item in args.output)
    print(summary(model, hyps, sources, refs, outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
