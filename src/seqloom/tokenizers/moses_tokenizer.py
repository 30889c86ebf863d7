"""``--tokenizer moses``: sacremoses' tokenizer (source language) and detokenizer (target language)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from seqloom.config.options import field
from seqloom.registry import TOKENIZERS


@dataclass(kw_only=True)
class MosesTokenizerConfig:
    """Options of ``--tokenizer moses`` (fairseq's names; the languages are shared with the task's flags)."""

    source_lang: Optional[str] = field("en", help="source language")
    target_lang: Optional[str] = field("en", help="target language")
    moses_no_dash_splits: bool = field(
        False, help="keep hyphenated words whole instead of splitting them at the hyphen"
    )
    moses_no_escape: bool = field(
        False, help="leave &, <, >, quotes and apostrophes as they are instead of writing them as HTML entities"
    )


@TOKENIZERS.register("moses", config=MosesTokenizerConfig)
class MosesTokenizer:
    """Moses tokenization as fairseq applies it: aggressive dash splits and XML escaping unless disabled."""

    def __init__(self, cfg: MosesTokenizerConfig) -> None:
        from sacremoses import MosesDetokenizer
        from sacremoses import MosesTokenizer as _Tokenizer

        self.cfg = cfg
        self.tok = _Tokenizer(cfg.source_lang or "en")
        self.detok = MosesDetokenizer(cfg.target_lang or "en")

    def encode(self, x: str) -> str:
        return self.tok.tokenize(
            x,
            aggressive_dash_splits=not self.cfg.moses_no_dash_splits,
            return_str=True,
            escape=not self.cfg.moses_no_escape,
        )

    def decode(self, x: str) -> str:
        return self.detok.detokenize(x.split())
