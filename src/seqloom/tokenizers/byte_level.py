"""GPT-2's byte <-> printable-character table and the byte-level decoding shared by gpt2 and hf_byte_bpe.

Byte-level BPE works on strings in which every UTF-8 byte is one printable character: the bytes
``!``..``~``, ``¡``..``¬`` and ``®``..``ÿ`` stand for themselves, the 68 others (control bytes, space,
0x7F..0xA0, 0xAD) map to U+0100 onwards in byte order. A space is therefore ``Ġ`` (U+0120).
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def byte_to_char() -> dict[int, str]:
    """The 256-entry table byte -> character of GPT-2's byte-level alphabet."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = (b for b in range(256) if b not in table)
    for offset, b in enumerate(shifted):
        table[b] = chr(256 + offset)
    return dict(sorted(table.items()))


@lru_cache(maxsize=1)
def char_to_byte() -> dict[str, int]:
    """The inverse of :func:`byte_to_char`."""
    return {c: b for b, c in byte_to_char().items()}


def byte_level_bytes(piece: str) -> bytes:
    """The bytes a byte-level token string stands for; ValueError for a character outside the alphabet."""
    table = char_to_byte()
    try:
        return bytes(table[c] for c in piece)
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r} is not in the byte-level BPE alphabet") from None
