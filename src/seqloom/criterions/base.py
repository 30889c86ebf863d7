"""The criterion contract: ``criterion(model, sample) -> (loss, sample_size, logging_output)``.

``sample`` is fairseq's batch layout::

    {"id": (B,), "nsentences": int, "ntokens": int (non-pad target tokens),
     "net_input": {"src_tokens": (B, S), "src_lengths": (B,), "prev_output_tokens": (B, T)},
     "target": (B, T)}

``loss`` is *summed* over the non-pad target tokens (natural log, as fairseq); the trainer divides the
gradients by the summed ``sample_size`` (tokens, or sentences with ``--sentence-avg``).
``logging_output`` has fairseq's keys; tensor values are detached 0-d tensors (summable across
workers without a device sync) or ints. ``reduce_metrics`` turns a list of them into the logged figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict, cast

import torch
from torch import Tensor, nn

from seqloom.criterions.vocab_loss import smoothed_cross_entropy, vocab_cross_entropy
from seqloom.modules.masks import output_positions
from seqloom.modules.transformer import OutputFeatures


class LoggingOutput(TypedDict, total=False):
    """One batch's statistics (fairseq's keys); every value sums across batches and workers."""

    loss: Tensor | float  # summed loss, natural log
    nll_loss: Tensor | float  # summed negative log-likelihood of the targets, natural log
    ntokens: int  # non-pad target tokens
    nsentences: int
    sample_size: int  # the gradient denominator: ntokens, or nsentences with --sentence-avg
    n_correct: Tensor | int  # with --report-accuracy: argmax == target among non-pad tokens
    total: Tensor | int  # with --report-accuracy: non-pad tokens counted
    alignment_loss: Tensor | float  # label_smoothed_cross_entropy_with_alignment: summed, natural log


# Decimals fairseq shows for each figure (its meters round when printing; ``ppl`` and ``accuracy`` are
# rounded when derived, as reduce_metrics does).
DISPLAY_ROUND = {"loss": 3, "nll_loss": 3, "ppl": 2, "accuracy": 3}

LN2 = math.log(2)


def log_sum(logging_outputs: Sequence[Mapping[str, Any]], key: str) -> float:
    """The sum of ``key`` over ``logging_outputs`` as a float (0 where absent)."""
    return float(sum(float(log.get(key, 0)) for log in logging_outputs))


def perplexity(loss_base2: float, *, decimals: int = 2) -> float:
    """``2 ** loss`` rounded as fairseq's ``get_perplexity`` (inf on overflow)."""
    try:
        return round(2**loss_base2, decimals)
    except OverflowError:
        return math.inf


def parameters_are_sharded(model: nn.Module) -> bool:
    """Whether FSDP wraps ``model`` (its gathered parameters do not outlive ``forward``)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def reduce_counts(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
    """The summed ``ntokens``, ``nsentences`` and ``sample_size``."""
    return {k: log_sum(logging_outputs, k) for k in ("ntokens", "nsentences", "sample_size")}


def reduce_accuracy(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
    """``n_correct``, ``total`` and ``accuracy`` (percent, 3 decimals) when any output counted tokens."""
    total = log_sum(logging_outputs, "total")
    if total <= 0:
        return {}
    n_correct = log_sum(logging_outputs, "n_correct")
    return {"n_correct": n_correct, "total": total, "accuracy": round(n_correct * 100.0 / total, 3)}


class Criterion(nn.Module):
    """Base class of the criterions: holds the padding index and the ``--sentence-avg`` choice."""

    def __init__(self, *, padding_idx: int, sentence_avg: bool = False) -> None:
        super().__init__()
        self.padding_idx = padding_idx
        self.sentence_avg = sentence_avg

    def sample_size(self, sample: dict[str, Any]) -> int:
        return int(sample["target"].size(0)) if self.sentence_avg else int(sample["ntokens"])

    @staticmethod
    def lprobs(model: nn.Module, sample: dict[str, Any]) -> Tensor:
        """Runs the model on ``sample["net_input"]``; returns float32 log-probabilities (B, T, V)."""
        out = model(**sample["net_input"])
        # an nn.Module attribute types as ``Tensor | Module``; the models define this method
        get_normalized_probs = cast("Callable[..., Tensor]", model.get_normalized_probs)
        return get_normalized_probs(out.logits, log_probs=True)

    def scored_positions(self, target: Tensor, ignore_prefix_size: int = 0) -> Tensor:
        """``(B, T)`` bool: the target positions a loss counts (not padding, not the first ``ignore_prefix_size``)."""
        keep = target.ne(self.padding_idx)
        if ignore_prefix_size > 0:
            keep[:, :ignore_prefix_size] = False
        return keep

    @staticmethod
    def target_logits(model: nn.Module, sample: dict[str, Any], keep: Tensor) -> Tensor | None:
        """Float logits ``(N, V)`` at the ``N`` True positions of ``keep`` ``(B, T)``, row-major; None when the
        model cannot project a subset (it has no ``supports_output_mask``)."""
        if not getattr(model, "supports_output_mask", False):
            return None
        return model(**sample["net_input"], output_mask=output_positions(keep)).logits

    def target_loss(self, model: nn.Module, sample: dict[str, Any], keep: Tensor, epsilon: float
                    ) -> tuple[Tensor, Tensor] | None:  # fmt: skip
        """(label-smoothed loss, nll loss) of the targets at the True positions of ``keep`` ``(B, T)``, summed,
        with the vocabulary product fused into the loss (:mod:`seqloom.criterions.vocab_loss`); None when the
        model does not hand out its features (no ``supports_output_features``) or a wrapper needs every
        weight used inside ``forward``: FSDP frees the gathered weight once ``forward`` returns, and DDP with
        ``--find-unused-parameters`` would take an output matrix that only the loss uses for unused."""
        if not getattr(model, "supports_output_features", False) or parameters_are_sharded(model):
            return None
        if getattr(model, "find_unused_parameters", False):  # DDP's own attribute
            return None
        out = model(**sample["net_input"], output_mask=output_positions(keep), project=False)
        if not isinstance(out, OutputFeatures):  # e.g. an output layer that is not a plain matrix
            return smoothed_cross_entropy(out.logits, sample["target"][keep], epsilon)
        return vocab_cross_entropy(out.features, out.weight, sample["target"][keep], epsilon)

    @staticmethod
    def reduce_metrics(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
        raise NotImplementedError

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        """Whether workers may sum their logging outputs before ``reduce_metrics`` (always, here)."""
        return True


def count_correct(lprobs: Tensor, target: Tensor, padding_idx: int) -> tuple[Tensor, Tensor]:
    """(argmax == target among non-pad tokens, non-pad tokens); lprobs (N, V), target (N,)."""
    mask = target.ne(padding_idx)
    n_correct = lprobs.argmax(dim=-1).eq(target).logical_and(mask).sum()
    return n_correct, mask.sum()
