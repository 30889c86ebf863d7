"""``--criterion label_smoothed_cross_entropy``: cross-entropy against a smoothed target distribution.

With ``eps = --label-smoothing`` and vocabulary size ``V``, the gold token gets ``1 - eps`` and every
other token ``eps_i = eps / (V - 1)``, so per token (fairseq >= 0.10's formula)::

    loss = (1 - eps - eps_i) * nll + eps_i * smooth,   nll = -log p(gold),  smooth = -sum_v log p(v)

Both are summed over the non-pad target tokens (natural log); ``nll_loss`` is reported alongside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from seqloom import registry
from seqloom.config import field
from seqloom.criterions.base import (
    LN2,
    Criterion,
    LoggingOutput,
    count_correct,
    log_sum,
    perplexity,
    reduce_accuracy,
    reduce_counts,
)
from seqloom.criterions.vocab_loss import smoothed_cross_entropy


@dataclass(kw_only=True)
class LabelSmoothedCrossEntropyConfig:
    """Flags of fairseq's ``label_smoothed_cross_entropy``."""

    label_smoothing: float = field(
        0.0, help="share of the target probability spread evenly over the whole vocabulary (0: plain cross-entropy)"
    )
    report_accuracy: bool = field(False, help="also log the share of target tokens the model ranks first")
    ignore_prefix_size: int = field(0, help="leave the first N target tokens of each sentence out of the loss")


def label_smoothed_nll_loss(
    lprobs: Tensor, target: Tensor, epsilon: float, *, ignore_index: int | None = None
) -> tuple[Tensor, Tensor]:
    """(smoothed loss, nll loss), each summed over the non-``ignore_index`` tokens.

    lprobs (N, V) log-probabilities, target (N,) token ids.
    """
    surprise = -lprobs.gather(dim=-1, index=target.unsqueeze(-1)).squeeze(-1)  # (N,) -log p(target)
    spread = -lprobs.sum(dim=-1)  # (N,) minus the summed log-probs of the whole vocabulary
    if ignore_index is not None:
        counted = target != ignore_index  # (N,)
        surprise, spread = torch.where(counted, surprise, 0.0), torch.where(counted, spread, 0.0)
    nll_loss, smooth_loss = surprise.sum(), spread.sum()
    # eps spread over the V - 1 wrong tokens; the target keeps 1 - eps (fairseq's mix, its rounding included)
    per_token = epsilon / (lprobs.size(-1) - 1)
    loss = (1.0 - epsilon - per_token) * nll_loss + per_token * smooth_loss
    return loss, nll_loss


@registry.CRITERIONS.register("label_smoothed_cross_entropy", config=LabelSmoothedCrossEntropyConfig)
class LabelSmoothedCrossEntropyCriterion(Criterion):
    def __init__(
        self, cfg: LabelSmoothedCrossEntropyConfig | None = None, *, padding_idx: int, sentence_avg: bool = False
    ) -> None:
        super().__init__(padding_idx=padding_idx, sentence_avg=sentence_avg)
        self.cfg = cfg or LabelSmoothedCrossEntropyConfig()
        if not 0.0 <= self.cfg.label_smoothing < 1.0:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {self.cfg.label_smoothing}")
        if self.cfg.ignore_prefix_size < 0:
            raise ValueError(f"--ignore-prefix-size must be >= 0, got {self.cfg.ignore_prefix_size}")

    def lprobs_and_target(self, model: nn.Module, sample: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Flattened (N, V) log-probabilities and (N,) targets, without the first ``--ignore-prefix-size``."""
        lprobs = self.lprobs(model, sample)  # (B, T, V)
        target = sample["target"]  # (B, T)
        k = self.cfg.ignore_prefix_size
        if k > 0:
            lprobs, target = lprobs[:, k:, :], target[:, k:]
        return lprobs.reshape(-1, lprobs.size(-1)), target.reshape(-1)  # (B*T', V), (B*T',)

    def forward(self, model: nn.Module, sample: dict[str, Any]) -> tuple[Tensor, int, LoggingOutput]:
        keep = self.scored_positions(sample["target"], self.cfg.ignore_prefix_size)  # (B, T)
        # without the logits (fused into the loss) unless accuracy is counted from them
        fused = None if self.cfg.report_accuracy else self.target_loss(model, sample, keep, self.cfg.label_smoothing)
        logits = self.target_logits(model, sample, keep) if fused is None else None  # (N, V), or None
        if fused is not None:
            loss, nll_loss = fused
        elif logits is not None:
            target = sample["target"][keep]  # (N,)
            loss, nll_loss = smoothed_cross_entropy(logits, target, self.cfg.label_smoothing)
            scores = logits
        else:
            scores, target = self.lprobs_and_target(model, sample)
            loss, nll_loss = label_smoothed_nll_loss(
                scores, target, self.cfg.label_smoothing, ignore_index=self.padding_idx
            )
        sample_size = self.sample_size(sample)
        logging_output: LoggingOutput = {
            "loss": loss.detach(),
            "nll_loss": nll_loss.detach(),
            "ntokens": int(sample["ntokens"]),
            "nsentences": int(sample["target"].size(0)),
            "sample_size": sample_size,
        }
        if self.cfg.report_accuracy:
            n_correct, total = count_correct(scores.detach(), target, self.padding_idx)
            logging_output["n_correct"] = n_correct
            logging_output["total"] = total
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
        return reduce_metrics(logging_outputs)


def reduce_metrics(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
    """fairseq's figures: ``loss`` (base 2, per ``sample_size``), ``nll_loss`` (base 2, per token),
    ``ppl = 2 ** nll_loss`` (2 decimals), ``accuracy`` when counted, and the summed counts."""
    counts = reduce_counts(logging_outputs)
    loss = log_sum(logging_outputs, "loss") / counts["sample_size"] / LN2 if counts["sample_size"] else 0.0
    nll = log_sum(logging_outputs, "nll_loss") / counts["ntokens"] / LN2 if counts["ntokens"] else 0.0
    return {"loss": loss, "nll_loss": nll, "ppl": perplexity(nll), **reduce_accuracy(logging_outputs), **counts}
