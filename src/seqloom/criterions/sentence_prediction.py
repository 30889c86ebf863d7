"""``--criterion sentence_prediction``: cross-entropy of a classification head, or squared error (regression).

The model is called as fairseq calls it, ``model(**net_input, features_only=True,
classification_head_name=...)``, and returns ``(B, num_classes)`` scores in ``DecoderOut.logits``. Losses are
summed (natural log); ``sample_size`` is the number of sentences; ``accuracy`` (percent) is reported for
classification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom import registry
from seqloom.config.options import field
from seqloom.criterions.base import LN2, Criterion, LoggingOutput, log_sum, reduce_counts


@dataclass(kw_only=True)
class SentencePredictionCriterionConfig:
    """Options of ``--criterion sentence_prediction`` (fairseq's)."""

    classification_head_name: str = field("sentence_classification_head", help="name of the classification head to use")
    regression_target: bool = field(False, help="regression (mean squared error) instead of classification")


@registry.CRITERIONS.register("sentence_prediction", config=SentencePredictionCriterionConfig)
class SentencePredictionCriterion(Criterion):
    def __init__(self, cfg: SentencePredictionCriterionConfig | None = None, *, padding_idx: int,
                 sentence_avg: bool = False) -> None:  # fmt: skip
        super().__init__(padding_idx=padding_idx, sentence_avg=sentence_avg)
        self.cfg = cfg or SentencePredictionCriterionConfig()

    def forward(self, model: nn.Module, sample: dict[str, Any]) -> tuple[Tensor, int, LoggingOutput]:
        name = self.cfg.classification_head_name
        heads = getattr(model, "classification_heads", None)
        if heads is None or name not in heads:
            raise ValueError(f"model must provide a classification head {name!r} for --criterion "
                             "sentence_prediction (set --classification-head-name)")  # fmt: skip
        logits = model(**sample["net_input"], features_only=True, classification_head_name=name).logits  # (B, C)
        targets = sample["target"]
        sample_size = int(targets.size(0))
        logging_output: dict[str, Any] = {"ntokens": int(sample["ntokens"]), "nsentences": sample_size,
                                          "sample_size": sample_size}  # fmt: skip
        if self.cfg.regression_target:
            loss = F.mse_loss(logits.view(-1).float(), targets.view(-1).float(), reduction="sum")
        else:
            targets = targets.view(-1)
            lprobs = F.log_softmax(logits, dim=-1, dtype=torch.float32)
            loss = F.nll_loss(lprobs, targets, reduction="sum")
            logging_output["ncorrect"] = (logits.argmax(dim=1) == targets).sum().detach()
        logging_output["loss"] = loss.detach()
        return loss, sample_size, logging_output  # type: ignore[return-value]

    @staticmethod
    def reduce_metrics(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
        """``loss`` in base 2 per sentence; ``nll_loss`` per token as fairseq; ``accuracy`` in percent."""
        counts = reduce_counts(logging_outputs)
        loss_sum = log_sum(logging_outputs, "loss")
        out = {"loss": loss_sum / counts["sample_size"] / LN2 if counts["sample_size"] else 0.0}
        if counts["sample_size"] != counts["ntokens"] and counts["ntokens"]:
            out["nll_loss"] = loss_sum / counts["ntokens"] / LN2
        if any("ncorrect" in log for log in logging_outputs) and counts["nsentences"]:
            out["accuracy"] = round(100.0 * log_sum(logging_outputs, "ncorrect") / counts["nsentences"], 3)
        return {**out, **counts}
