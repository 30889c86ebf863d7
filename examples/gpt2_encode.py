"""Raw text -> GPT-2 BPE ids, one line of space-separated ids per input line (empty lines kept).

What fairseq's ``examples/roberta/multiprocessing_bpe_encoder.py`` writes (byte for byte: tested on fairseq's
BART fixtures), for BART/RoBERTa data. GPT-2's ``encoder.json`` and ``vocab.bpe`` are not downloaded.

    python examples/gpt2_encode.py --encoder-json gpt2/encoder.json --vocab-bpe gpt2/vocab.bpe \
        --inputs train.en --outputs train.bpe
"""

from __future__ import annotations

import argparse

from seqloom.tokenizers.gpt2_bpe import GPT2BPE, GPT2BPEConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder-json", required=True, help="GPT-2's encoder.json")
    parser.add_argument("--vocab-bpe", required=True, help="GPT-2's vocab.bpe")
    parser.add_argument("--inputs", nargs="+", required=True, help="raw text files")
    parser.add_argument("--outputs", nargs="+", required=True, help="one output file per input")
    args = parser.parse_args()
    if len(args.inputs) != len(args.outputs):
        parser.error(f"--inputs has {len(args.inputs)} files but --outputs {len(args.outputs)}")
    bpe = GPT2BPE(GPT2BPEConfig(gpt2_encoder_json=args.encoder_json, gpt2_vocab_bpe=args.vocab_bpe))
    for src, dst in zip(args.inputs, args.outputs):
        with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
            for line in fin:
                line = line.strip()  # as fairseq's encoder: surrounding whitespace dropped
                fout.write((bpe.encode(line) if line else "") + "\n")


if __name__ == "__main__":
    main()
