"""Text of fairseq-generate's output lines (``H-``, ``D-``, ``P-``, ``A-``) and the string post-processing.

Scores are natural-log float32 values; the lines print them in base 2 exactly as fairseq does: the
sentence score as the full repr of the float32 quotient, positional scores with four decimals.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from seqloom.generation.alignment import format_alignment
from seqloom.generation.hypotheses import Hypothesis

if TYPE_CHECKING:
    from seqloom.data.dictionary import Dictionary

LN2 = math.log(2)


def base2(score: float) -> float:
    """A natural-log float32 score in base 2, computed in float32 as fairseq prints it."""
    return float(torch.tensor(score, dtype=torch.float32) / LN2)


def hypothesis_lines(
    sample_id: int, hyp: Hypothesis, hypo_str: str, detok_str: str, *, print_alignment: str | None = None
) -> list[str]:
    """The ``H-``, ``D-``, ``P-`` (and ``A-``) lines of one hypothesis."""
    score = base2(hyp.score)
    positional = (hyp.positional_scores.float() / LN2).tolist()
    lines = [
        f"H-{sample_id}\t{score}\t{hypo_str}",
        f"D-{sample_id}\t{score}\t{detok_str}",
        f"P-{sample_id}\t" + " ".join(f"{x:.4f}" for x in positional),
    ]
    if print_alignment is not None:
        lines.append(f"A-{sample_id}\t{format_alignment(hyp.alignment, print_alignment)}")
    return lines


def load_align_dict(replace_unk: str | None) -> dict[str, str] | None:
    """``--replace-unk``: None (off), {} (copy the aligned source word), or a file of ``src tgt`` lines."""
    if replace_unk is None:
        return None
    if replace_unk.strip() in ("", "@@"):
        return {}
    align: dict[str, str] = {}
    try:
        with open(replace_unk, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                cols = line.split()
                if len(cols) < 2:
                    raise ValueError(f"--replace-unk {replace_unk}:{lineno}: expected 'source target', got {line!r}")
                align[cols[0]] = cols[1]
    except FileNotFoundError:
        raise FileNotFoundError(f"--replace-unk {replace_unk}: no such alignment dictionary file") from None
    return align


def replace_unk(hypo_str: str, src_str: str, alignment: list, align_dict: dict[str, str], unk: str) -> str:
    """Replaces each unk of the hypothesis by (the translation of) the source word it is aligned to."""
    words = hypo_str.split()
    src_words = src_str.split() + ["<eos>"]
    source_of = {t: s for s, t in alignment}
    for i, word in enumerate(words):
        if word == unk and i in source_of and source_of[i] < len(src_words):
            src_word = src_words[source_of[i]]
            words[i] = align_dict.get(src_word, src_word)
    return " ".join(words)


def post_process_prediction(
    hyp: Hypothesis,
    *,
    src_str: str,
    align_dict: dict[str, str] | None,
    tgt_dict: Dictionary,
    post_process: str | None,
    strip: frozenset[int] = frozenset(),
) -> str:
    """The hypothesis text: symbols (not ``</s>`` or ``strip``), BPE removed (``--post-process``), unks
    replaced (``--replace-unk``)."""
    hypo_str = tgt_dict.string(hyp.tokens, post_process, extra_symbols_to_ignore={tgt_dict.eos(), *strip})
    if align_dict is not None:
        hypo_str = replace_unk(hypo_str, src_str, hyp.alignment, align_dict, tgt_dict.unk_string())
    return hypo_str
