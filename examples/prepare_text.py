"""Tokenizes a parallel corpus with sacremoses and learns/applies a joint subword-nmt BPE.

The same recipe as fairseq's fixtures (Moses without XML escaping, aggressive dash splits, joint BPE):
``python examples/prepare_text.py --src en --tgt es --input DIR --output DIR --merges 2000``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sacremoses import MosesTokenizer
from subword_nmt.apply_bpe import BPE
from subword_nmt.learn_joint_bpe_and_vocab import learn_joint_bpe_and_vocab

from seqloom.data.bom import strip_bom_lines

SPLITS = ("train", "valid", "test")


def tokenize_file(src: Path, dst: Path, lang: str) -> None:
    tok = MosesTokenizer(lang=lang)
    with src.open(encoding="utf-8") as fin, dst.open("w", encoding="utf-8") as fout:
        for line in strip_bom_lines(fin, str(src)):  # a byte-order mark is not part of the first word
            fout.write(tok.tokenize(line.strip(), aggressive_dash_splits=True, return_str=True, escape=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", default="en")
    parser.add_argument("--tgt", default="es")
    parser.add_argument("--input", required=True, help="folder with {train,valid,test}.{src,tgt}")
    parser.add_argument("--output", required=True)
    parser.add_argument("--merges", type=int, default=2000)
    args = parser.parse_args()
    inp, out = Path(args.input), Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    langs = (args.src, args.tgt)
    for split in SPLITS:
        for lang in langs:
            tokenize_file(inp / f"{split}.{lang}", out / f"{split}.tok.{lang}", lang)
    codes = out / "bpe.codes"
    learn_joint_bpe_and_vocab(
        argparse.Namespace(
            input=[(out / f"train.tok.{lang}").open(encoding="utf-8") for lang in langs],
            output=codes.open("w", encoding="utf-8"),
            symbols=args.merges,
            separator="@@",
            min_frequency=2,
            total_symbols=False,
            vocab=[(out / f"vocab.{lang}").open("w", encoding="utf-8") for lang in langs],
            verbose=False,
            special_vocab=False,
            num_workers=1,
        )
    )
    bpe = BPE(open(codes, encoding="utf-8"))
    for split in SPLITS:
        for lang in langs:
            with (
                (out / f"{split}.tok.{lang}").open(encoding="utf-8") as fin,
                (out / f"{split}.bpe.{lang}").open("w", encoding="utf-8") as fout,
            ):
                for line in fin:
                    fout.write(bpe.process_line(line))


if __name__ == "__main__":
    main()
