"""``--bpe bytes``: one symbol per UTF-8 byte (fairseq's bytes.py and byte_utils.py).

Whitespace runs become one space first; each byte is then written as a character: printable Latin-1
bytes (0x20-0x7E, 0xA1-0xAC, 0xAE-0xFF) as themselves, every other byte ``b`` as ``chr(256 + b)``;
the space byte is escaped as ``▁``. Decoding a broken byte sequence (e.g. a generated hypothesis that
cut a character in half) keeps the largest number of characters that do decode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from seqloom.registry import BPES
from seqloom.tokenizers.characters_bpe import SPACE, SPACE_ESCAPE, is_space_or_special

WHITESPACE_RUN = re.compile(r"\s+")
# the non-breaking space (0xA0) and soft hyphen (0xAD) are shifted like control bytes
PRINTABLE_LATIN = frozenset([*range(0x20, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)])
BYTE_TO_CHAR = {b: chr(b) if b in PRINTABLE_LATIN else chr(256 + b) for b in range(256)}
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
MAX_UTF8_LEN = 4


@dataclass(kw_only=True)
class BytesConfig:
    """``--bpe bytes`` takes no options (as in fairseq)."""


def byte_encode(x: str) -> str:
    """Text -> one character per UTF-8 byte, whitespace runs collapsed to a single space first."""
    return "".join(BYTE_TO_CHAR[b] for b in WHITESPACE_RUN.sub(SPACE, x).encode("utf-8"))


def byte_decode(x: str) -> str | None:
    """Byte characters -> text, or None if the bytes are not valid UTF-8."""
    try:
        data = bytes(CHAR_TO_BYTE[c] for c in x)
    except KeyError as e:
        raise ValueError(f"symbol {e.args[0]!r} is not a byte of the bytes BPE") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def smart_byte_decode(x: str) -> str:
    """Decodes ``x``; if it is broken UTF-8, keeps the most characters that decode (dropping the rest).

    A dynamic program over prefixes: ``count[i]`` is the most characters decodable from ``x[:i]``,
    each taken from a chunk of 1-4 bytes; ties keep the shorter chunk, as fairseq's does.
    """
    whole = byte_decode(x)
    if whole is not None:
        return whole
    count = [0] * (len(x) + 1)
    start = [0] * (len(x) + 1)  # where the last chunk of the best parse of x[:i] begins
    for i in range(1, len(x) + 1):
        count[i], start[i] = count[i - 1], i - 1  # byte i-1 dropped
        for j in range(1, min(MAX_UTF8_LEN, i) + 1):
            if count[i - j] + 1 > count[i] and byte_decode(x[i - j : i]):
                count[i], start[i] = count[i - j] + 1, i - j
    return _trace_back(x, count, start)


def _trace_back(x: str, count: list[int], start: list[int]) -> str:
    chunks: list[str] = []
    i = len(x)
    while i > 0:
        if count[i] == count[start[i]] + 1:
            chunks.append(byte_decode(x[start[i] : i]) or "")
        i = start[i]
    return "".join(reversed(chunks))


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
