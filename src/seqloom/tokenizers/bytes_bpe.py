"""``--bpe bytes``: one symbol per UTF-8 byte (fairseq's bytes.py and byte_utils.py).

Whitespace runs become one space first; each byte is then written as a character: printable Latin-1
bytes (0x20-0x7E, 0xA1-0xAC, 0xAE-0xFF) as themselves, every other byte ``b`` as ``chr(256 + b)``;
the space byte is escaped as ``▁``. Decoding a broken byte sequence (e.g. a generated hypothesis that
cut a character in half) keeps every character that is whole and drops the stray bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from seqloom.registry import BPES
from seqloom.tokenizers.characters_bpe import SPACE, SPACE_ESCAPE, is_space_or_special

WHITESPACE_RUN = re.compile(r"\s+")
SHIFT = 0x100  # a byte without a printable character of its own is written as chr(SHIFT + byte)


def _shown_as_itself(byte: int) -> bool:
    """Printable Latin-1, less the non-breaking space (0xA0) and the soft hyphen (0xAD)."""
    return 0x20 <= byte <= 0x7E or (0xA1 <= byte <= 0xFF and byte != 0xAD)


BYTE_TO_CHAR = {byte: chr(byte if _shown_as_itself(byte) else SHIFT + byte) for byte in range(256)}
CHAR_TO_BYTE = {char: byte for byte, char in BYTE_TO_CHAR.items()}
# str.translate tables between Latin-1 text (one character per byte) and the byte symbols
_TO_SYMBOLS = {byte: ord(char) for byte, char in BYTE_TO_CHAR.items() if ord(char) != byte}
_TO_LATIN1 = {ord(char): byte for char, byte in CHAR_TO_BYTE.items() if ord(char) != byte}


@dataclass(kw_only=True)
class BytesConfig:
    """``--bpe bytes`` takes no options (as in fairseq)."""


def byte_encode(x: str) -> str:
    """Text -> one character per UTF-8 byte, whitespace runs collapsed to a single space first."""
    return WHITESPACE_RUN.sub(SPACE, x).encode("utf-8").decode("latin-1").translate(_TO_SYMBOLS)


def symbol_bytes(x: str) -> bytes:
    """The bytes that the byte symbols ``x`` stand for; a character outside the 256 symbols is an error."""
    stray = next((c for c in x if c not in CHAR_TO_BYTE), None)
    if stray is not None:
        raise ValueError(f"symbol {stray!r} is not a byte of the bytes BPE")
    return x.translate(_TO_LATIN1).encode("latin-1")


def smart_byte_decode(x: str) -> str:
    """Decodes the byte symbols ``x``; from broken UTF-8 it keeps every character that is whole.

    fairseq finds, by dynamic programming over 1-4-byte chunks, the most chunks that decode. In UTF-8 a
    character's first byte names its length and the bytes after it cannot begin one, so the whole characters
    do not overlap and keeping each of them alone is that maximum (a chunk of two characters would count
    one). Python's decoder with ``errors="ignore"`` keeps exactly those: it drops a bad byte run and starts
    again at the next byte that can begin a character.
    """
    return symbol_bytes(x).decode("utf-8", errors="ignore")


@BPES.register("bytes", config=BytesConfig)
class BytesBPE:
    """UTF-8 bytes as symbols: ``"né e"`` <-> ``"n Ã © ▁ e"``."""

    def __init__(self, cfg: BytesConfig | None = None) -> None:
        del cfg  # no options

    def encode(self, x: str) -> str:
        return SPACE.join(byte_encode(x).replace(SPACE, SPACE_ESCAPE))

    def decode(self, x: str) -> str:
        return smart_byte_decode(x.replace(SPACE, "").replace(SPACE_ESCAPE, SPACE))

    def is_beginning_of_word(self, x: str) -> bool:
        return is_space_or_special(x)
