"""``--criterion label_smoothed_cross_entropy_with_alignment``: label-smoothed cross-entropy plus fairseq's
alignment loss (Garg et al., 2019, "Jointly Learning to Align and Translate with Transformer Models").

The model's alignment-layer cross-attention ``p`` (``(B, T, S)``, its first alignment heads averaged; with
``--full-context-alignment`` from a second, unmasked decoder pass) is pulled towards the batch's word
alignments (``--load-alignments``):

    alignment_loss = - sum over pairs (i, j) of  w_j * log p[j, i]       (natural log, summed over the batch)
    loss = label_smoothed_loss + --alignment-lambda * alignment_loss

``w_j`` is 1 / (the number of pairs aligned to target token ``j``). A batch without alignments adds nothing.
As in fairseq, the logged ``loss`` is the label-smoothed part alone and ``alignment_loss`` is logged beside it
(base 2, per ``sample_size``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from seqloom import registry
from seqloom.config import field
from seqloom.criterions.base import LN2, LoggingOutput, log_sum
from seqloom.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyConfig,
    reduce_metrics,
    smoothed_cross_entropy,
)
from seqloom.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion as _LabelSmoothed,
)
from seqloom.modules.masks import output_positions


@dataclass(kw_only=True)
class LabelSmoothedCrossEntropyWithAlignmentConfig(LabelSmoothedCrossEntropyConfig):
    """Flags of fairseq's ``label_smoothed_cross_entropy_with_alignment``."""

    alignment_lambda: float = field(0.05, help="factor on the alignment loss added to the translation loss")


def alignment_loss(attn: Tensor, alignments: Tensor, weights: Tensor) -> Tensor:
    """``- sum w * log attn[tgt, src]`` over the pairs ``alignments`` ``(N, 2)`` (source index into ``S``,
    target index into the flattened ``B*T``) of the attention ``attn`` ``(B, T, S)``; natural log."""
    flat = attn.reshape(-1, attn.size(-1)).float()  # (B*T, S)
    return -(flat[alignments[:, 1], alignments[:, 0]].log() * weights.float()).sum()


@registry.CRITERIONS.register(
    "label_smoothed_cross_entropy_with_alignment", config=LabelSmoothedCrossEntropyWithAlignmentConfig
)
class LabelSmoothedCrossEntropyWithAlignmentCriterion(_LabelSmoothed):
    cfg: LabelSmoothedCrossEntropyWithAlignmentConfig

    def forward(self, model: nn.Module, sample: dict[str, Any]) -> tuple[Tensor, int, LoggingOutput]:
        if self.cfg.ignore_prefix_size > 0 or self.cfg.report_accuracy:
            raise ValueError(
                "label_smoothed_cross_entropy_with_alignment: --ignore-prefix-size and --report-accuracy are not "
                "options of this criterion (fairseq's ignores them)"
            )
        keep = self.scored_positions(sample["target"])  # (B, T)
        out = model(**sample["net_input"], output_mask=output_positions(keep), need_attn=True)
        loss, nll_loss = smoothed_cross_entropy(out.logits, sample["target"][keep], self.cfg.label_smoothing)
        sample_size = self.sample_size(sample)
        logging_output: LoggingOutput = {
            "loss": loss.detach(),
            "nll_loss": nll_loss.detach(),
            "ntokens": int(sample["ntokens"]),
            "nsentences": int(sample["target"].size(0)),
            "sample_size": sample_size,
        }
        if sample.get("alignments") is not None and len(sample["alignments"]) > 0:
            if out.attn is None:
                raise ValueError("label_smoothed_cross_entropy_with_alignment: the model returned no attention")
            align = alignment_loss(out.attn, sample["alignments"], sample["align_weights"])
            logging_output["alignment_loss"] = align.detach()
            loss = loss + self.cfg.alignment_lambda * align  # the logged loss stays without it, as fairseq's
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
        figures = reduce_metrics(logging_outputs)
        size = figures.get("sample_size", 0)
        figures["alignment_loss"] = log_sum(logging_outputs, "alignment_loss") / size / LN2 if size else 0.0
        return figures
