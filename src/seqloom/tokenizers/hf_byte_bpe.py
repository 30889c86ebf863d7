"""``--bpe hf_byte_bpe``: a byte-level BPE of HF ``tokenizers`` (``vocab.json`` + ``merges.txt``).

As fairseq's ``hf_byte_bpe``, this wraps ``tokenizers.ByteLevelBPETokenizer``: ``encode`` returns its
ids as space-separated strings, ``decode`` reads them back (``<unk>`` and ``<mask>`` pass through
literally). With GPT-2's files (``encoder.json`` is a ``vocab.json``, ``vocab.bpe`` a ``merges.txt``)
it gives the same ids as ``--bpe gpt2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tokenizers import ByteLevelBPETokenizer

from seqloom.config.options import field
from seqloom.registry import BPES
from seqloom.tokenizers.bpe import require_file

LITERAL_SYMBOLS = frozenset({"<unk>", "<mask>"})


@dataclass(kw_only=True)
class HuggingFaceByteLevelBPEConfig:
    """Options of ``--bpe hf_byte_bpe`` (fairseq's names and defaults)."""

    bpe_merges: Optional[str] = field(None, help="the merges.txt file of the byte-level BPE")
    bpe_vocab: Optional[str] = field(None, help="the vocab.json file of the byte-level BPE")
    bpe_add_prefix_space: bool = field(
        False, help="put a space before the text, so that its first word is cut as any other"
    )


@BPES.register("hf_byte_bpe", config=HuggingFaceByteLevelBPEConfig)
class HuggingFaceByteLevelBPE:
    """HF byte-level BPE ids: ``"Hello world"`` -> ``"15496 995"`` with GPT-2's files."""

    def __init__(self, cfg: HuggingFaceByteLevelBPEConfig) -> None:
        vocab = require_file(cfg.bpe_vocab, flag="--bpe-vocab", what="the byte-level BPE's vocab.json")
        merges = require_file(cfg.bpe_merges, flag="--bpe-merges", what="the byte-level BPE's merges.txt")
        try:
            self.tokenizer = ByteLevelBPETokenizer(str(vocab), str(merges), add_prefix_space=cfg.bpe_add_prefix_space)
        except Exception as e:  # tokenizers raises a bare Exception for unreadable files
            raise ValueError(
                f"--bpe-vocab {vocab} / --bpe-merges {merges}: cannot build a byte-level BPE ({e})"
            ) from None

    def encode(self, x: str) -> str:
        return " ".join(map(str, self.tokenizer.encode(x).ids))

    def decode(self, x: str) -> str:
        """Ids (and literal ``<unk>``/``<mask>``) -> text; ValueError for any other symbol."""
        return self.tokenizer.decoder.decode([self._piece(sym) for sym in x.split()])

    def is_beginning_of_word(self, x: str) -> bool:
        """True if the symbol's text starts with a space; symbols that are not ids count as word starts."""
        try:
            return self.decode(x).startswith(" ")
        except ValueError:
            return True

    def _piece(self, sym: str) -> str:
        if sym in LITERAL_SYMBOLS:
            return sym
        piece = self.tokenizer.id_to_token(int(sym)) if sym.isdecimal() else None
        if piece is None:
            raise ValueError(f"{sym!r} is not a token id of the byte-level BPE (--bpe-vocab)")
        return piece
