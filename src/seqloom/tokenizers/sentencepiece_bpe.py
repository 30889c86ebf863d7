"""``--bpe sentencepiece``: a SentencePiece model's pieces as fairseq uses them (mBART, XLM-R, M2M ...).

``encode`` returns the model's pieces joined by spaces (``▁`` marks a word start); ``decode`` joins
the pieces, turns ``▁`` back into spaces and strips the ends, exactly as fairseq's decode (which
works on the strings only, so it also decodes pieces that a dictionary produced).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import sentencepiece as spm

from seqloom.config.options import field
from seqloom.registry import BPES
from seqloom.tokenizers.bpe import require_file

WORD_START = "\u2581"  # ▁
# special symbols that fairseq's whole-word masking always treats as word starts
SPECIAL_SYMBOLS = frozenset({"<unk>", "<s>", "</s>", "<pad>"})


@dataclass(kw_only=True)
class SentencepieceConfig:
    """Options of ``--bpe sentencepiece`` (fairseq's names and defaults)."""

    sentencepiece_model: Optional[str] = field(None, help="path to the SentencePiece model (.model)")
    sentencepiece_enable_sampling: bool = field(
        False, help="sample a segmentation when encoding (subword regularization)"
    )
    sentencepiece_alpha: Optional[float] = field(
        None, help="smoothing parameter of unigram sampling, or the merge-dropout probability of BPE-dropout"
    )


@BPES.register("sentencepiece", config=SentencepieceConfig)
class SentencepieceBPE:
    """SentencePiece pieces: ``"Hello world"`` -> ``"▁He ll o ▁world"`` (depending on the model)."""

    def __init__(self, cfg: SentencepieceConfig) -> None:
        path = require_file(cfg.sentencepiece_model, flag="--sentencepiece-model", what="a SentencePiece .model file")
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(path))
        except (OSError, RuntimeError) as e:
            raise ValueError(f"--sentencepiece-model {path}: not a SentencePiece model ({e})") from None
        self.enable_sampling = cfg.sentencepiece_enable_sampling
        self.alpha = cfg.sentencepiece_alpha

    def encode(self, x: str) -> str:
        pieces = self.sp.Encode(x, out_type=str, enable_sampling=self.enable_sampling, alpha=self.alpha)
        return " ".join(pieces)

    def decode(self, x: str) -> str:
        return x.replace(" ", "").replace(WORD_START, " ").strip()

    def is_beginning_of_word(self, x: str) -> bool:
        return x in SPECIAL_SYMBOLS or x.startswith(WORD_START)
