"""``--tokenizer space``: whitespace runs become single spaces; decoding is the identity."""

from __future__ import annotations

import re

from seqloom.registry import TOKENIZERS

_SPACES = re.compile(r"\s+")


@TOKENIZERS.register("space")
class SpaceTokenizer:
    def encode(self, x: str) -> str:
        return _SPACES.sub(" ", x)

    def decode(self, x: str) -> str:
        return x
