"""Which dictionary symbols begin a word under a BPE (fairseq's ``get_whole_word_mask``).

Whole-word masking (denoising's ``--mask-length span-poisson`` with ``--bpe``, masked_lm's
``--mask-whole-words``) needs it. Special symbols, ``madeupword`` fillers and symbols the BPE cannot read
count as word starts, as in fairseq.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from seqloom.tokenizers.bpe import BPE


class SymbolTable(Protocol):
    """A dictionary's symbols by id, the first ``nspecial`` of them special (``<s>``, ``<pad>`` ...)."""

    @property
    def nspecial(self) -> int: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> str: ...


def word_start_table(dictionary: SymbolTable, bpe: BPE) -> np.ndarray:
    """``(V,)`` bool over ``dictionary``'s symbols (indexable, ``len``, ``nspecial``): True where one begins a word
    according to ``bpe.is_beginning_of_word``."""

    def begins(i: int) -> bool:
        symbol = dictionary[i]
        if i < dictionary.nspecial or symbol.startswith("madeupword"):
            return True
        try:
            return bool(bpe.is_beginning_of_word(symbol))
        except ValueError:
            return True

    return np.array([begins(i) for i in range(len(dictionary))], dtype=bool)
