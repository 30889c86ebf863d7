"""``seqloom score --sys HYP --ref REF``: corpus BLEU of tokenized text files, as fairseq-score.

By default fairseq's own BLEU on the space-separated tokens (``<unk>`` in the reference never matches);
``--sacrebleu`` uses sacrebleu's standard BLEU, ``--sentence-bleu`` prints one +1-smoothed BLEU per line.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TextIO

from seqloom.cli.parser import parse_args
from seqloom.cli.specs import SCORE as SPEC
from seqloom.cli.specs import ScoreConfig
from seqloom.data.bom import strip_bom_lines
from seqloom.generation.scoring import BleuScorer


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(SPEC, argv)
    cfg: ScoreConfig = args["score"]
    if cfg.ref is None:
        raise SystemExit("seqloom score: --ref is required (the reference file)")
    if not 1 <= cfg.order <= 4:
        raise SystemExit(f"seqloom score: --order {cfg.order}: BLEU counts n-grams of orders 1 to 4 (use 1-4)")
    ns = argparse.Namespace(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
    print(ns)  # fairseq-score prints its arguments first
    try:
        with open(cfg.ref, encoding="utf-8") as ref:
            if cfg.sys == "-":
                score(cfg, strip_bom_lines(sys.stdin, "stdin"), strip_bom_lines(ref, cfg.ref), sys.stdout)
            else:
                with open(cfg.sys, encoding="utf-8") as hyp:
                    score(cfg, strip_bom_lines(hyp, cfg.sys), strip_bom_lines(ref, cfg.ref), sys.stdout)
    except FileNotFoundError as err:
        raise SystemExit(f"seqloom score: {err.filename}: no such file (check --sys/--ref)") from None
    return 0


def read_lines(stream: Iterable[str], ignore_case: bool) -> Iterator[str]:
    for line in stream:
        yield line.lower() if ignore_case else line


class Vocabulary:
    """Ids for the words of both files as they come (fairseq encodes with a growing dictionary)."""

    def __init__(self) -> None:
        from seqloom.data.dictionary import Dictionary

        self.dict = Dictionary()

    def ids(self, line: str) -> list[int]:
        return self.dict.encode_line(line, add_if_not_exist=True).tolist()


def score(cfg: ScoreConfig, hyp: Iterable[str], ref: Iterable[str], out: TextIO) -> None:
    if cfg.sacrebleu:
        import sacrebleu

        hyps, refs = list(hyp), list(ref)
        if len(hyps) != len(refs):
            raise SystemExit(
                f"seqloom score: --sys {cfg.sys} has {len(hyps)} lines but --ref {cfg.ref} has {len(refs)}"
            )
        print(sacrebleu.corpus_bleu(hyps, [refs]).format(), file=out)
        return
    vocab = Vocabulary()
    pad, eos, unk = vocab.dict.pad(), vocab.dict.eos(), vocab.dict.unk()
    scorer = BleuScorer(pad=pad, eos=eos, unk=unk)
    pairs = itertools.zip_longest(read_lines(hyp, cfg.ignore_case), read_lines(ref, cfg.ignore_case))
    for i, (sys_line, ref_line) in enumerate(pairs):
        if sys_line is None or ref_line is None:  # fairseq's zip stops at the shorter file without a word
            longer, shorter = ("--ref", "--sys") if sys_line is None else ("--sys", "--ref")
            raise SystemExit(f"seqloom score: {shorter} ends after {i} lines but {longer} goes on; the files must "
                             "have one line per sentence each")  # fmt: skip
        if cfg.sentence_bleu:
            scorer = BleuScorer(pad=pad, eos=eos, unk=unk, smoothed=True)
        sys_ids = vocab.ids(sys_line)  # the system line first: ids (and so hash collisions) as in fairseq
        scorer.add(vocab.ids(ref_line), sys_ids)
        if cfg.sentence_bleu:
            print(i, scorer.result_string(cfg.order), file=out)
    if not cfg.sentence_bleu:
        print(scorer.result_string(cfg.order), file=out)


if __name__ == "__main__":
    sys.exit(main())
