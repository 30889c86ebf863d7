"""``--criterion cross_entropy``: the summed negative log-likelihood of the non-pad target tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from seqloom import registry
from seqloom.criterions.base import LN2, Criterion, LoggingOutput, log_sum, perplexity, reduce_counts
from seqloom.criterions.vocab_loss import smoothed_cross_entropy


@dataclass(kw_only=True)
class CrossEntropyConfig:
    """``cross_entropy`` has no flags of its own (``--sentence-avg`` belongs to the optimization group)."""


@registry.CRITERIONS.register("cross_entropy", config=CrossEntropyConfig)
class CrossEntropyCriterion(Criterion):
    def __init__(self, cfg: CrossEntropyConfig | None = None, *, padding_idx: int, sentence_avg: bool = False) -> None:
        super().__init__(padding_idx=padding_idx, sentence_avg=sentence_avg)
        self.cfg = cfg or CrossEntropyConfig()

    def forward(self, model: nn.Module, sample: dict[str, Any]) -> tuple[Tensor, int, LoggingOutput]:
        keep = self.scored_positions(sample["target"])  # (B, T)
        fused = self.target_loss(model, sample, keep, 0.0)
        logits = self.target_logits(model, sample, keep) if fused is None else None  # (N, V), or None
        if fused is not None:
            loss = fused[0]
        elif logits is not None:
            loss, _ = smoothed_cross_entropy(logits, sample["target"][keep], 0.0)
        else:
            lprobs = self.lprobs(model, sample)  # (B, T, V)
            loss = F.nll_loss(
                lprobs.view(-1, lprobs.size(-1)),  # (B*T, V)
                sample["target"].view(-1),  # (B*T,)
                ignore_index=self.padding_idx,
                reduction="sum",
            )
        sample_size = self.sample_size(sample)
        logging_output: LoggingOutput = {
            "loss": loss.detach(),
            "ntokens": int(sample["ntokens"]),
            "nsentences": int(sample["target"].size(0)),
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
        """``loss`` in base 2 per ``sample_size``; as fairseq, ``nll_loss`` (per token) only when the sample
        size is not the token count (``--sentence-avg``), and ``ppl`` from whichever is per token."""
        counts = reduce_counts(logging_outputs)
        loss_sum = log_sum(logging_outputs, "loss")
        out = {"loss": loss_sum / counts["sample_size"] / LN2 if counts["sample_size"] else 0.0}
        if counts["sample_size"] != counts["ntokens"]:
            out["nll_loss"] = loss_sum / counts["ntokens"] / LN2 if counts["ntokens"] else 0.0
            out["ppl"] = perplexity(out["nll_loss"])
        else:
            out["ppl"] = perplexity(out["loss"])
        return {**out, **counts}
