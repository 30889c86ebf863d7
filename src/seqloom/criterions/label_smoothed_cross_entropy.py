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


@dataclass(kw_only=True)
class LabelSmoothedCrossEntropyConfig:
    """Flags of fairseq's ``label_smoothed_cross_entropy``."""

    label_smoothing: float = field(0.0, help="epsilon for label smoothing, 0 means no label smoothing")
    report_accuracy: bool = field(False, help="report accuracy metric")
    ignore_prefix_size: int = field(0, help="Ignore first N tokens")


def label_smoothed_nll_loss(
    lprobs: Tensor, target: Tensor, epsilon: float, *, ignore_index: int | None = None
) -> tuple[Tensor, Tensor]:
    """(smoothed loss, nll loss), each summed over the non-``ignore_index`` tokens.

    lprobs (N, V) log-probabilities, target (N,) token ids.
    """
    target = target.unsqueeze(-1)  # (N, 1)
    nll = -lprobs.gather(dim=-1, index=target)  # (N, 1)
    smooth = -lprobs.sum(dim=-1, keepdim=True)  # (N, 1)
    if ignore_index is not None:
        pad = target.eq(ignore_index)
        nll = nll.masked_fill(pad, 0.0)
        smooth = smooth.masked_fill(pad, 0.0)
    nll_loss, smooth_loss = nll.sum(), smooth.sum()
    eps_i = epsilon / (lprobs.size(-1) - 1)
    loss = (1.0 - epsilon - eps_i) * nll_loss + eps_i * smooth_loss
    return loss, nll_loss


class _SmoothedCrossEntropy(torch.autograd.Function):
    """:func:`label_smoothed_nll_loss` of ``log_softmax(logits)``, differentiated by hand.

    Forward keeps one ``(N, V)`` buffer, ``e = exp(logits - max)``, with its row sums ``s``: the loss needs
    only ``log s``, and backward turns ``e`` into the gradient in place,
    ``d loss / d logits = (a + eps_i V) e / s - a onehot(target) - eps_i`` with ``a = 1 - eps - eps_i``
    (``softmax - onehot`` for the nll). One exponential per logit and no ``(N, V)`` temporaries, which
    matters with a 50k vocabulary (BART), where each such pass costs as much as the rest of the step.
    The gradient can be taken once (a second ``backward`` through it raises, as the buffer was reused).
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
        x = logits.float()  # (N, V), possibly a column slice of a wider buffer
        top = x.amax(-1, keepdim=True)  # (N, 1)
        e = torch.sub(x, top).exp_()  # (N, V)
        sums = e.sum(-1, keepdim=True)  # (N, 1)
        lse = sums.log().add_(top).squeeze(-1)  # (N,) log sum_v exp(logits)
        nll = (lse - x.gather(-1, target.unsqueeze(-1)).squeeze(-1)).sum()
        v = x.size(-1)
        eps_i = epsilon / (v - 1)
        loss = (1.0 - epsilon - eps_i) * nll
        if epsilon > 0:
            loss = loss + eps_i * (v * lse.sum() - x.sum())  # smooth = -sum_v log p(v)
        ctx.save_for_backward(e, sums, target)
        ctx.epsilon, ctx.in_dtype = epsilon, logits.dtype
        return loss, nll

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, grad_nll: Tensor) -> tuple[Tensor, None, None]:
        grad, sums, target = ctx.saved_tensors
        v = grad.size(-1)
        eps_i = ctx.epsilon / (v - 1)
        a = 1.0 - ctx.epsilon - eps_i
        scale = grad_loss * (a + eps_i * v) + grad_nll  # 0-d; exactly 1 for a plain cross-entropy's loss.backward()
        grad.mul_(scale / sums)  # softmax, scaled, in the saved buffer
        if eps_i > 0:
            grad.sub_(grad_loss * eps_i)
        gold = -(grad_loss * a + grad_nll)  # 0-d
        grad.scatter_add_(-1, target.unsqueeze(-1), gold.to(grad.dtype).expand(target.numel(), 1))
        return grad.to(ctx.in_dtype), None, None


def smoothed_cross_entropy(logits: Tensor, target: Tensor, epsilon: float) -> tuple[Tensor, Tensor]:
    """(smoothed loss, nll loss) summed over all rows of ``logits`` ``(N, V)`` against ``target`` ``(N,)``.

    Equal to ``label_smoothed_nll_loss(log_softmax(logits), target, epsilon)`` (natural log, float32), in
    less time and memory; ``epsilon = 0`` gives plain cross-entropy twice.
    """
    loss, nll = _SmoothedCrossEntropy.apply(logits, target, epsilon)
    return loss, nll


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
        logits = self.target_logits(model, sample, keep)  # (N, V), or None
        if logits is not None:
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
