"""Source-target alignments read off the cross-attention (``--print-alignment``)."""

from __future__ import annotations

from itertools import accumulate

import torch
from torch import Tensor


def token_to_word(tokens: list[int], exclude: set[int]) -> list[int]:
    """1-based word number of every position, counting only tokens outside ``exclude`` (pad, eos)."""
    return list(accumulate(int(t not in exclude) for t in tokens))


def hard_alignment(attn: Tensor, src: Tensor, tgt: Tensor, *, pad: int, eos: int) -> list[tuple[int, int]]:
    """For every real target token, the source token it attends to most: ``[(src_word, tgt_word)]`` (0-based).

    ``attn`` (T, S) over the padded source row ``src`` (S,); ``tgt`` (T,) the hypothesis tokens.
    """
    tgt_valid = ((tgt != pad) & (tgt != eos)).nonzero(as_tuple=False).squeeze(dim=-1)
    src_invalid = ((src == pad) | (src == eos)).nonzero(as_tuple=False).squeeze(dim=-1)
    if len(tgt_valid) == 0 or len(src_invalid) >= len(src):
        return []
    src_words = token_to_word(src.tolist(), {eos, pad})
    tgt_words = token_to_word(tgt.tolist(), {eos, pad})
    valid = attn[tgt_valid].clone()  # (T', S)
    valid[:, src_invalid] = float("-inf")
    _, src_indices = valid.max(dim=1)
    return [(src_words[s] - 1, tgt_words[t] - 1) for t, s in zip(tgt_valid.tolist(), src_indices.tolist())]


def soft_alignment(attn: Tensor, src: Tensor, tgt: Tensor, *, pad: int, eos: int) -> list[list[str]]:
    """Per real target token, its attention over the real source tokens as ``"%.6f"`` strings."""
    tgt_valid = (tgt != pad).nonzero(as_tuple=False).squeeze(dim=-1)
    src_valid = (src != pad).nonzero(as_tuple=False).squeeze(dim=-1)
    if len(tgt_valid) == 0 or len(src_valid) == 0:
        return []
    probs = attn[tgt_valid][:, src_valid]  # (T', S')
    return [[f"{p:.6f}" for p in row] for row in probs.tolist()]


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
