"""Source-target alignments read off the cross-attention (``--print-alignment``)."""

from __future__ import annotations

import torch
from torch import Tensor


def hard_alignment(attn: Tensor, src: Tensor, tgt: Tensor, *, pad: int, eos: int) -> list[tuple[int, int]]:
    """For every word of the hypothesis, the source word it attends to most: ``[(src_word, tgt_word)]``.

    ``attn`` (T, S) is over the padded source row ``src`` (S,); ``tgt`` (T,) are the hypothesis tokens.
    Words are numbered from 0 among the tokens that are neither pad nor eos; ties go to the first source word.
    """
    src_words = (src != pad) & (src != eos)  # (S,)
    tgt_words = (tgt != pad) & (tgt != eos)  # (T,)
    if not bool(src_words.any()):
        return []
    best = attn[tgt_words][:, src_words].argmax(dim=1)  # (T',) over the source words alone
    return [(s, t) for t, s in enumerate(best.tolist())]


def soft_alignment(attn: Tensor, src: Tensor, tgt: Tensor, *, pad: int, eos: int) -> list[list[str]]:
    """Each non-pad target token's attention over the non-pad source tokens (eos counts), as ``"%.6f"``."""
    weights = attn[tgt != pad][:, src != pad]  # (T', S')
    if weights.numel() == 0:
        return []
    return [[f"{w:.6f}" for w in row] for row in weights.tolist()]


def format_alignment(alignment: list, kind: str) -> str:
    """The text of an ``A-`` line."""
    if kind == "soft":
        return " ".join(",".join(row) for row in alignment)
    return " ".join(f"{s}-{t}" for s, t in alignment)


def add_alignments(hyps: list, src_tokens: Tensor, *, pad: int, eos: int, kind: str = "hard") -> None:
    """Fills ``alignment`` of every hypothesis of sentence ``i`` from its attention and ``src_tokens[i]``."""
    extract = soft_alignment if kind == "soft" else hard_alignment
    with torch.no_grad():
        for i, sentence in enumerate(hyps):
            for h in sentence:
                if h.attention is not None:
                    h.alignment = extract(
                        h.attention.transpose(0, 1).float(), src_tokens[i], h.tokens, pad=pad, eos=eos
                    )
