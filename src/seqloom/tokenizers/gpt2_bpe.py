"""``--bpe gpt2``: GPT-2's byte-level BPE as fairseq applies it (BART, RoBERTa): text <-> GPT-2 ids.

``encode`` returns the GPT-2 ids as space-separated decimal strings, which is what BART's and
RoBERTa's ``dict.txt`` index. The merges run in HF ``tokenizers`` (a BPE model built from
``encoder.json`` + ``vocab.bpe`` behind GPT-2's pre-tokenization regex), which reproduces fairseq's
own Python encoder id for id (tests/tokenizers/test_gpt2_bpe.py checks fairseq's BART fixtures).
The one known difference: a code point that is unassigned in the Unicode tables of HF's regex engine
but assigned in those of the ``regex`` module fairseq used (e.g. Unicode 16/17 additions) may be
split differently; fairseq's output for such text already depends on its installed ``regex`` version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tokenizers import Tokenizer, models, pre_tokenizers

from seqloom.config.options import field
from seqloom.registry import BPES
from seqloom.tokenizers.bpe import require_file
from seqloom.tokenizers.byte_level import byte_level_bytes

# symbols that fairseq's gpt2 decode passes through literally instead of reading them as ids
LITERAL_SYMBOLS = frozenset({"<unk>", "<mask>"})


@dataclass(kw_only=True)
class GPT2BPEConfig:
    """Options of ``--bpe gpt2`` (fairseq's names; no URL defaults: nothing is downloaded)."""

    gpt2_encoder_json: Optional[str] = field(None, help="path to encoder.json (GPT-2 token -> id)")
    gpt2_vocab_bpe: Optional[str] = field(None, help="path to vocab.bpe (GPT-2 merges, best first)")


def load_encoder_json(path: Path) -> dict[str, int]:
    """Reads ``encoder.json``: a JSON object mapping byte-level token strings to ids."""
    try:
        with open(path, encoding="utf-8") as f:
            vocab = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path}:{e.lineno}: not valid JSON ({e.msg}); --gpt2-encoder-json wants encoder.json"
        ) from None
    if not isinstance(vocab, dict):
        raise ValueError(f"{path}: expected a JSON object of token -> id; --gpt2-encoder-json wants encoder.json")
    return vocab


def load_vocab_bpe(path: Path) -> list[tuple[str, str]]:
    """Reads ``vocab.bpe``: a version line, then one ``left right`` merge per line, best first.

    As fairseq does, the first line and everything after the last newline are skipped (so a file
    without a trailing newline loses its last merge in fairseq too, and ids stay identical).
    """
    lines = path.read_text(encoding="utf-8").split("\n")[1:-1]
    merges: list[tuple[str, str]] = []
    for lineno, line in enumerate(lines, start=2):
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{lineno}: expected a merge 'left right', got {line!r} (--gpt2-vocab-bpe)")
        merges.append((parts[0], parts[1]))
    return merges


def byte_level_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Tokenizer:
    """An HF tokenizer doing GPT-2's regex pre-tokenization, byte mapping and BPE merges (no prefix space)."""
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return tok


@BPES.register("gpt2", config=GPT2BPEConfig)
class GPT2BPE:
    """GPT-2 byte-level BPE: ``"Hello world"`` <-> ``"15496 995"``."""

    def __init__(self, cfg: GPT2BPEConfig) -> None:
        encoder_json = require_file(cfg.gpt2_encoder_json, flag="--gpt2-encoder-json", what="GPT-2's encoder.json")
        vocab_bpe = require_file(cfg.gpt2_vocab_bpe, flag="--gpt2-vocab-bpe", what="GPT-2's vocab.bpe")
        vocab = load_encoder_json(encoder_json)
        self.tokenizer = byte_level_tokenizer(vocab, load_vocab_bpe(vocab_bpe))
        self.id_to_token = {i: t for t, i in vocab.items()}
        self._bytes: dict[str, bytes] = {}  # decode's symbol -> bytes, filled as symbols are met

    def encode(self, x: str) -> str:
        ids = self.tokenizer.encode(x, add_special_tokens=False).ids
        return " ".join(map(str, ids))

    def decode(self, x: str) -> str:
        """GPT-2 ids (and literal ``<unk>``/``<mask>``) -> text; ValueError for any other symbol.

        Each symbol's bytes are kept once looked up (hub outputs decode symbol by symbol, often the same ones)."""
        symbols = x.split()
        known = self._bytes
        for sym in symbols:
            if sym not in known:
                known[sym] = byte_level_bytes(self._piece(sym))
        return b"".join([known[sym] for sym in symbols]).decode("utf-8", errors="replace")

    def is_beginning_of_word(self, x: str) -> bool:
        """True if the symbol's text starts with a space; symbols that are not GPT-2 ids (``<s>``,
        ``madeupword0000``, ...) count as word starts, as fairseq's whole-word mask treats them."""
        try:
            return self.decode(x).startswith(" ")
        except ValueError:
            return True

    def _piece(self, sym: str) -> str:
        if sym in LITERAL_SYMBOLS:
            return sym
        try:
            return self.id_to_token[int(sym)]
        except (ValueError, KeyError):
            raise ValueError(f"{sym!r} is not a GPT-2 token id (the gpt2 BPE decodes ids from encoder.json)") from None
