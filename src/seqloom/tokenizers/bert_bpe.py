"""``--bpe bert``: BERT's WordPiece (``##`` marks a piece that continues a word), from a ``vocab.txt``.

fairseq calls transformers' ``BertTokenizer``; seqloom uses the WordPiece of HF ``tokenizers`` (already a
dependency) with the same normalization (whitespace and control cleanup, CJK characters split, lowercasing
and accent stripping unless ``--bpe-cased``), and fairseq's decoding: pieces joined, ``" ##"`` removed, and
transformers' clean-up of spaces before punctuation and contractions. Tests compare both on the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tokenizers import BertWordPieceTokenizer

from seqloom.config.options import field
from seqloom.registry import BPES
from seqloom.tokenizers.bpe import require_file

# transformers' clean_up_tokenization: spaces dropped before these
CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))  # fmt: skip


@dataclass(kw_only=True)
class BertBPEConfig:
    """Options of ``--bpe bert`` (fairseq's names and defaults)."""

    bpe_cased: bool = field(False, help="keep letter case (a cased vocabulary); otherwise text is lowercased first")
    bpe_vocab_file: Optional[str] = field(None, help="the WordPiece vocabulary file (vocab.txt)")


@BPES.register("bert", config=BertBPEConfig)
class BertBPE:
    """``"Unaffable"`` -> ``"una ##ff ##able"`` (depending on the vocabulary)."""

    def __init__(self, cfg: BertBPEConfig) -> None:
        vocab = require_file(cfg.bpe_vocab_file, flag="--bpe-vocab-file", what="the BERT vocab.txt")
        self.tokenizer = BertWordPieceTokenizer(str(vocab), lowercase=not cfg.bpe_cased, clean_text=True,
                                                handle_chinese_chars=True)  # fmt: skip

    def encode(self, x: str) -> str:
        return " ".join(self.tokenizer.encode(x, add_special_tokens=False).tokens)

    def decode(self, x: str) -> str:
        text = " ".join(x.split(" ")).replace(" ##", "").strip()
        for before, after in CLEAN_UP:
            text = text.replace(before, after)
        return text

    def is_beginning_of_word(self, x: str) -> bool:
        return not x.startswith("##")
