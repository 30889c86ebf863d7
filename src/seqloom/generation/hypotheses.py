"""Finished hypotheses: how they are cut out of the beam buffers and how their scores are normalized."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

# the keys of fairseq's hypothesis dicts, in fairseq's order
FAIRSEQ_KEYS = ("tokens", "score", "attention", "alignment", "positional_scores")


@dataclass
class Hypothesis(Mapping[str, Any]):
    """One finished output sequence.

    Scores are natural-log probabilities held in float32, as fairseq computes them; ``seqloom generate``
    prints them in base 2.

    Read it by attribute (``hyp.score``, a float) or as fairseq's hub hands out hypotheses, a read-only dict
    (``hyp['positional_scores']``, ``'tokens' in hyp``, ``hyp.keys()``) with fairseq's keys and value types:
    ``hyp['score']`` is a 0-dim float32 tensor, ``hyp['attention']`` and ``hyp['alignment']`` are empty tensors
    when nothing was recorded (as fairseq's beam search gives them).
    """

    tokens: Tensor  # (T,) int64 output tokens, ending in eos
    score: float  # sentence score: sum of positional scores / T**lenpen (unless unnormalized)
    positional_scores: Tensor  # (T,) float32 log-prob of each token
    attention: Tensor | None = None  # (S, T) cross-attention over the (padded) source, if recorded
    alignment: list = field(default_factory=list)  # hard: [(src_word, tgt_word)]; soft: per-token probabilities

    def __getitem__(self, key: str) -> Any:
        if key == "score":
            return torch.tensor(self.score, dtype=torch.float32, device=self.positional_scores.device)
        if key == "attention":
            return self.attention if self.attention is not None else torch.empty(0)
        if key == "alignment":
            return self.alignment if len(self.alignment) else torch.empty(0)
        if key in ("tokens", "positional_scores"):
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(FAIRSEQ_KEYS)

    def __len__(self) -> int:
        return len(FAIRSEQ_KEYS)


def length_normalized(scores: Tensor, length: int, lenpen: float) -> Tensor:
    """``scores / length**lenpen`` (fairseq's length penalty; ``length`` counts the final eos)."""
    return scores / (length**lenpen)


def finalize_hypotheses(
    step: int,
    rows: Tensor,
    eos_scores: Tensor,
    *,
    tokens: Tensor,
    scores: Tensor,
    attn: Tensor | None,
    eos: int,
    lenpen: float,
    normalize: bool,
) -> list[Hypothesis]:
    """Hypotheses for the beam ``rows`` (N,) that end with eos at ``step``, in the order given.

    ``tokens`` (R, L) starts with bos; ``scores`` (R, L-1) holds cumulative log-probs; ``eos_scores`` (N,)
    the cumulative score including the eos. Positional scores are the differences of cumulative ones.
    """
    out_tokens = tokens.index_select(0, rows)[:, 1 : step + 2]  # (N, step+1) without bos
    out_tokens[:, step] = eos
    positional = scores.index_select(0, rows)[:, : step + 1]  # (N, step+1) cumulative
    positional[:, step] = eos_scores
    positional[:, 1:] = positional[:, 1:] - positional[:, :-1]
    final = length_normalized(eos_scores, step + 1, lenpen) if normalize else eos_scores
    att = attn.index_select(0, rows)[:, :, 1 : step + 2] if attn is not None else None  # (N, S, step+1)
    values = final.tolist()
    return [
        Hypothesis(out_tokens[i], values[i], positional[i], att[i] if att is not None else None)
        for i in range(rows.numel())
    ]


def sort_by_score(hyps: list[Hypothesis]) -> list[Hypothesis]:
    """Best first, with the tie order of ``torch.sort`` on float32 scores (as fairseq sorts)."""
    if len(hyps) <= 1:
        return hyps
    order = torch.sort(torch.tensor([h.score for h in hyps]), descending=True).indices.tolist()
    return [hyps[i] for i in order]
