"""``--bpe subword_nmt``: subword-nmt's BPE with ``--bpe-codes`` (``@@`` marks a word that continues)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from seqloom.config.options import field
from seqloom.registry import BPES
from seqloom.tokenizers.bpe import require_file


@dataclass(kw_only=True)
class SubwordNMTBPEConfig:
    """Options of ``--bpe subword_nmt`` (fairseq's names and defaults)."""

    bpe_codes: Optional[str] = field(None, help="file of the BPE merge codes")
    bpe_separator: str = field("@@", help="marker ending a subword that the next one continues")


@BPES.register("subword_nmt", config=SubwordNMTBPEConfig)
class SubwordNMTBPE:
    """``"darkness"`` -> ``"d@@ ar@@ k@@ ness"`` (depending on the codes); decoding removes ``"@@ "``."""

    def __init__(self, cfg: SubwordNMTBPEConfig) -> None:
        from subword_nmt import apply_bpe

        path = require_file(cfg.bpe_codes, flag="--bpe-codes", what="subword-nmt BPE codes")
        with open(path, encoding="utf-8") as codes:
            self.bpe = apply_bpe.BPE(codes, -1, cfg.bpe_separator, None, None)
        self.bpe_symbol = cfg.bpe_separator + " "

    def encode(self, x: str) -> str:
        return self.bpe.process_line(x)

    def decode(self, x: str) -> str:
        return (x + " ").replace(self.bpe_symbol, "").rstrip()

    def is_beginning_of_word(self, x: str) -> bool:
        """Undefined for ``@@`` codes: whether a symbol starts a word depends on the symbol before it."""
        raise NotImplementedError("--bpe subword_nmt cannot tell word starts from one symbol (whole-word masking)")
