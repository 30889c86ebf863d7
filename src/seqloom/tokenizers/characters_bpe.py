"""``--bpe characters``: one symbol per character, spaces written as ``▁`` (fairseq's characters.py).

``"Hi you"`` <-> ``"H i ▁ y o u"``. Only the ASCII space is escaped; other whitespace becomes its own
symbol, which a dictionary's whitespace split then drops, as in fairseq.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqloom.registry import BPES

SPACE = " "
SPACE_ESCAPE = "\u2581"  # ▁


@dataclass(kw_only=True)
class CharactersConfig:
    """``--bpe characters`` takes no options (as in fairseq)."""


def is_space_or_special(x: str) -> bool:
    """The word-start rule of the one-symbol-per-unit codecs (characters, bytes).

    fairseq defines no word starts for these codecs; seqloom counts the space symbol ``▁`` (so a space
    belongs to the word after it, as in GPT-2's ``Ġword``) and every multi-character symbol (``<s>``,
    ``<mask>``, ``madeupword0000``: never produced by the codec) as word starts.
    """
    return x == SPACE_ESCAPE or len(x) > 1


@BPES.register("characters", config=CharactersConfig)
class CharactersBPE:
    """Characters as symbols, ASCII spaces escaped as ``▁``."""

    def __init__(self, cfg: CharactersConfig | None = None) -> None:
        del cfg  # no options

    def encode(self, x: str) -> str:
        return SPACE.join(x.replace(SPACE, SPACE_ESCAPE))

    def decode(self, x: str) -> str:
        return x.replace(SPACE, "").replace(SPACE_ESCAPE, SPACE)

    def is_beginning_of_word(self, x: str) -> bool:
        return is_space_or_special(x)
