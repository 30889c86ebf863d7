"""Scoring reference tokens under a language model (fairseq's ``SequenceScorer`` for ``eval-lm`` and the hub).

For each row of an LM batch, the log-probability (natural log, float32) of every target token given the
tokens before it. An ensemble averages the models' probabilities. ``softmax_batch`` bounds how many
positions are normalised at once (the ``(B*T, V)`` log-softmax is the memory peak).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class ScoredSequence:
    """One row's reference tokens and their scores."""

    id: int
    tokens: Tensor  # (T,) target tokens without padding
    positional_scores: Tensor  # (T,) log P(token | prefix), natural log
    score: float  # mean of positional_scores


def target_log_probs(model: Any, sample: dict[str, Any], *, softmax_batch: int | None = None) -> Tensor:
    """``(B, T)`` float32 log-probabilities of ``sample["target"]`` under ``model`` (pad positions: garbage)."""
    target = sample["target"]  # (B, T)
    out = model(**sample["net_input"])
    features = out.logits  # (B, T, V), or (B, T, C) features before an adaptive softmax
    bsz, tsz = target.shape
    limit = softmax_batch or sys.maxsize
    if bsz * tsz < limit:
        return _gather_log_probs(model, features, target)
    flat = features.reshape(1, bsz * tsz, -1)  # (1, N, C)
    flat_target = target.reshape(1, -1)  # (1, N)
    pieces = [
        _gather_log_probs(model, flat[:, start : start + limit], flat_target[:, start : start + limit]).reshape(-1)
        for start in range(0, flat.size(1), limit)
    ]
    return torch.cat(pieces).view(bsz, tsz)


def _gather_log_probs(model: Any, features: Tensor, target: Tensor) -> Tensor:
    """``(B, T)`` log-probs of ``target``: the model's own ``target_log_probs`` when it has one (no ``(B, T, V)``
    log-softmax), else gathered from ``get_normalized_probs``."""
    fast = getattr(model, "target_log_probs", None)
    if fast is not None:
        return fast(features, target)
    lprobs = model.get_normalized_probs(features, log_probs=True)  # (B, T, V)
    return lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def score_batch(models: Sequence[Any], sample: dict[str, Any], *, pad: int, softmax_batch: int | None = None
                ) -> list[ScoredSequence]:  # fmt: skip
    """Scores every row of ``sample``; rows with ``start_indices`` (context windows) are scored from there."""
    total: Tensor | None = None
    for model in models:
        model.eval()
        lp = target_log_probs(model, sample, softmax_batch=softmax_batch)
        probs = lp if len(models) == 1 else lp.exp()
        total = probs if total is None else total + probs
    assert total is not None
    if len(models) > 1:
        total = (total / len(models)).log()
    target = sample["target"]
    starts = sample.get("start_indices") or [0] * target.size(0)
    ids = sample["id"].tolist()
    scored = []
    for i, start in enumerate(starts):
        ref = target[i, start:]
        ref = ref[ref.ne(pad)]
        scores = total[i, start : start + ref.numel()]
        mean = float(scores.sum()) / ref.numel() if ref.numel() else -math.inf
        scored.append(ScoredSequence(id=int(ids[i]), tokens=ref, positional_scores=scores, score=mean))
    return scored
