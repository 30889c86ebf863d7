"""characters BPE: one symbol per character, ASCII spaces as ▁ (fairseq's characters.py)."""

from __future__ import annotations

from pathlib import Path

from seqloom.registry import BPES
from seqloom.tokenizers.bpe import BPE, build_bpe
from seqloom.tokenizers.characters_bpe import CharactersBPE

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "bible-en-es" / "valid.es"


def test_encode_decode() -> None:
    codec = build_bpe("characters")
    assert isinstance(codec, CharactersBPE) and isinstance(codec, BPE)
    assert BPES.get("characters") is CharactersBPE
    assert codec.encode("Hi  you!") == "H i \u2581 \u2581 y o u !"
    assert codec.decode("H i \u2581 \u2581 y o u !") == "Hi  you!"
    assert codec.encode("") == ""
    # only the ASCII space is escaped: a tab stays a (whitespace) symbol of its own, as in fairseq
    assert codec.encode("a\tb") == "a \t b"


def test_round_trip_on_corpus() -> None:
    codec = CharactersBPE()
    for line in CORPUS.read_text(encoding="utf-8").split("\n"):
        encoded = codec.encode(line)
        assert len(encoded.split(" ")) == len(line) or line == ""
        assert codec.decode(encoded) == line


def test_is_beginning_of_word() -> None:
    codec = CharactersBPE()
    assert codec.is_beginning_of_word("\u2581")
    assert not codec.is_beginning_of_word("a")
    assert codec.is_beginning_of_word("<s>")
    assert codec.is_beginning_of_word("madeupword0000")
