"""``--criterion adaptive_loss``: cross-entropy through an adaptive softmax (Grave et al., 2017).

The head is trained on every position (tail words replaced by their band's cluster id), each tail only on
the positions whose target falls in it. As in fairseq, every band's cross-entropy ignores the index
``padding_idx``; in a tail band that is the band's *second* word (targets there are band-relative), which
fairseq's loss skips too, so the figures match fairseq's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from seqloom import registry
from seqloom.criterions.base import Criterion, LoggingOutput
from seqloom.criterions.cross_entropy import CrossEntropyCriterion


@dataclass(kw_only=True)
class AdaptiveLossConfig:
    """``adaptive_loss`` has no flags of its own (``--sentence-avg`` belongs to the optimization group)."""


@registry.CRITERIONS.register("adaptive_loss", config=AdaptiveLossConfig)
class AdaptiveLoss(Criterion):
    def __init__(self, cfg: AdaptiveLossConfig | None = None, *, padding_idx: int, sentence_avg: bool = False) -> None:
        super().__init__(padding_idx=padding_idx, sentence_avg=sentence_avg)
        self.cfg = cfg or AdaptiveLossConfig()

    def forward(self, model: nn.Module, sample: dict[str, Any]) -> tuple[Tensor, int, LoggingOutput]:
        inner = getattr(model, "module", model)  # DistributedDataParallel wraps the model
        softmax = getattr(getattr(inner, "decoder", None), "adaptive_softmax", None)
        if softmax is None:
            raise ValueError(
                "--criterion adaptive_loss needs a model with an adaptive softmax (set --adaptive-softmax-cutoff), "
                "or use --criterion cross_entropy"
            )
        target = sample["target"]  # (B, T)
        features = model(**sample["net_input"]).logits  # (B, T, C) features before the adaptive softmax
        outputs, targets = softmax(features, target)
        loss = features.new_zeros(())
        for scores, band_target in zip(outputs, targets):
            if scores is not None and band_target is not None:
                loss = loss + F.cross_entropy(
                    scores.float(), band_target, ignore_index=self.padding_idx, reduction="sum"
                )
        ntokens = int(target.ne(self.padding_idx).sum())
        sample_size = int(target.size(0)) if self.sentence_avg else ntokens
        logging_output: LoggingOutput = {
            "loss": loss.detach(),
            "ntokens": ntokens,
            "nsentences": int(target.size(0)),
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
        """As ``cross_entropy``'s: base-2 ``loss`` per sample-size unit, ``nll_loss`` and ``ppl`` per token."""
        return CrossEntropyCriterion.reduce_metrics(logging_outputs)
