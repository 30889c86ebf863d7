"""``--bpe fastbpe``: BPE codes in fastBPE's format (``A B COUNT`` per line), as fairseq's WMT'19 models use.

fairseq wraps the ``fastBPE`` package; that package is unmaintained since 2019 and must be compiled on
install, so seqloom applies the codes itself, with fastBPE's rules (tests compare the two on the bundled
corpus): a sentence is split on spaces (empty words dropped); each word is split into characters, the last
marked ``</w>``; the adjacent pair of lowest rank (line order) is merged everywhere in the word, until no pair
has a rank; every symbol but a word's last gets ``@@``. Decoding removes ``"@@ "``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from seqloom.config.options import field
from seqloom.registry import BPES
from seqloom.tokenizers.bpe import require_file

END = "</w>"


@dataclass(kw_only=True)
class FastBPEConfig:
    """Options of ``--bpe fastbpe`` (fairseq's names)."""

    bpe_codes: Optional[str] = field(None, help="file of the BPE merge codes")


def read_codes(path: str) -> dict[tuple[str, str], int]:
    """``(left, right) -> rank`` from a fastBPE codes file; a malformed line is named by file and number."""
    ranks: dict[tuple[str, str], int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(" ")
            if len(parts) != 3 or not parts[2].isdigit():
                raise ValueError(
                    f"--bpe-codes {path}:{lineno}: expected fastBPE's 'left right count', got {line.rstrip()!r}"
                    " (subword-nmt codes need --bpe subword_nmt)"
                )
            ranks.setdefault((parts[0], parts[1]), len(ranks))
    return ranks


@BPES.register("fastbpe", config=FastBPEConfig)
class FastBPE:
    """``"formless"`` -> ``"for@@ m@@ l@@ ess"`` (depending on the codes); decoding removes ``"@@ "``."""

    def __init__(self, cfg: FastBPEConfig) -> None:
        path = require_file(cfg.bpe_codes, flag="--bpe-codes", what="fastBPE codes")
        self.ranks = read_codes(str(path))
        self.bpe_symbol = "@@ "
        self._word = lru_cache(maxsize=2**16)(self._split_word)

    def _split_word(self, word: str) -> str:
        symbols = [*word[:-1], word[-1] + END]
        while len(symbols) > 1:
            ranked = [(self.ranks.get(pair), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
            candidates = [(rank, i) for rank, i in ranked if rank is not None]
            if not candidates:
                break
            best_rank = min(candidates)[0]
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and self.ranks.get((symbols[i], symbols[i + 1])) == best_rank:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        symbols[-1] = symbols[-1][: -len(END)]
        return " ".join(s + "@@" for s in symbols[:-1]) + (" " if len(symbols) > 1 else "") + symbols[-1]

    def encode(self, x: str) -> str:
        return " ".join(self._word(w) for w in x.split(" ") if w)

    def decode(self, x: str) -> str:
        return (x + " ").replace(self.bpe_symbol, "").rstrip()
