"""bytes BPE: one symbol per UTF-8 byte with fairseq's byte escaping and broken-UTF-8 recovery."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seqloom.registry import BPES
from seqloom.tokenizers.bpe import build_bpe
from seqloom.tokenizers.bytes_bpe import BYTE_TO_CHAR, BytesBPE, byte_encode, smart_byte_decode

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "bible-en-es" / "valid.es"


def test_byte_alphabet() -> None:
    assert len(set(BYTE_TO_CHAR.values())) == 256
    assert BYTE_TO_CHAR[ord("a")] == "a" and BYTE_TO_CHAR[0x20] == " " and BYTE_TO_CHAR[0xE9] == "\u00e9"
    # control bytes, 0x7F-0xA0 (incl. the non-breaking space) and the soft hyphen are shifted by 256
    for b in (0x00, 0x0A, 0x7F, 0x80, 0xA0, 0xAD):
        assert BYTE_TO_CHAR[b] == chr(256 + b)


def test_encode_decode() -> None:
    codec = build_bpe("bytes")
    assert isinstance(codec, BytesBPE)
    assert BPES.get("bytes") is BytesBPE
    # é = C3 A9, € = E2 82 AC (0x82 is shifted to U+0182); whitespace runs become one ▁
    assert codec.encode("né e\t\n x€") == "n \u00c3 \u00a9 \u2581 e \u2581 x \u00e2 \u0182 \u00ac"
    assert codec.decode("n \u00c3 \u00a9 \u2581 e \u2581 x \u00e2 \u0182 \u00ac") == "né e x€"
    assert codec.encode("") == "" and codec.decode("") == ""


def test_round_trip_on_corpus() -> None:
    codec = BytesBPE()
    for line in CORPUS.read_text(encoding="utf-8").split("\n"):
        encoded = codec.encode(line)
        assert len(encoded.split(" ")) == len(line.encode("utf-8")) or line == ""
        assert codec.decode(encoded) == re.sub(r"\s+", " ", line)


def test_broken_utf8_keeps_the_characters_that_decode() -> None:
    codec = BytesBPE()
    symbols = codec.encode("a€b").split()
    assert len(symbols) == 5
    assert codec.decode(" ".join(symbols[:2] + symbols[3:])) == "ab"  # € lost its middle byte
    assert codec.decode(" ".join(symbols[:3])) == "a"  # cut off mid-character
    cut = byte_encode("😀ñ")[1:]  # a 4-byte emoji without its lead byte, then ñ
    assert smart_byte_decode(cut) == "ñ"
    # a stray continuation byte inside a word
    assert smart_byte_decode(byte_encode("ab")[:1] + chr(256 + 0x80) + "b") == "ab"


def test_symbol_outside_the_alphabet_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a byte"):
        BytesBPE().decode("a \u4e2d")


def test_is_beginning_of_word() -> None:
    codec = BytesBPE()
    assert codec.is_beginning_of_word("\u2581")
    assert not codec.is_beginning_of_word("\u00c3")
    assert codec.is_beginning_of_word("</s>")
