"""``--criterion masked_lm``: cross-entropy of the masked-LM head at the masked positions only.

The positions are those whose target is not pad; only their rows are projected onto the vocabulary
(``model(..., masked_tokens=mask)`` returns ``(N, V)`` logits), as fairseq does; a batch with no masked
position projects every position (and its loss is 0, every target being pad). The loss is summed (natural
log); ``sample_size`` is the number of masked positions; ``loss`` is reported per masked token in base 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from seqloom import registry
from seqloom.criterions.base import LN2, Criterion, LoggingOutput, log_sum, perplexity, reduce_counts


@dataclass(kw_only=True)
class MaskedLMCriterionConfig:
    """``masked_lm`` has no flags of its own (fairseq's ``--tpu`` only changes how it runs on TPUs)."""


@registry.CRITERIONS.register("masked_lm", config=MaskedLMCriterionConfig)
class MaskedLMCriterion(Criterion):
    def __init__(self, cfg: MaskedLMCriterionConfig | None = None, *, padding_idx: int,
                 sentence_avg: bool = False) -> None:  # fmt: skip
        super().__init__(padding_idx=padding_idx, sentence_avg=sentence_avg)
        self.cfg = cfg or MaskedLMCriterionConfig()

    def forward(self, model: nn.Module, sample: dict[str, Any]) -> tuple[Tensor, int, LoggingOutput]:
        if not getattr(model, "supports_masked_tokens", False):
            raise ValueError(f"--criterion masked_lm needs a masked-LM model (--arch roberta_base ...), "
                             f"not a {type(model).__name__}")  # fmt: skip
        target = sample["target"]  # (B, T), pad where nothing is predicted
        masked = target.ne(self.padding_idx)  # (B, T)
        sample_size = int(masked.sum())
        net_input = sample["net_input"]
        if sample_size == 0:  # nothing masked: project everything, as fairseq (every target is ignored)
            logits = model(net_input["src_tokens"], net_input.get("src_lengths")).logits  # (B, T, V)
            targets = target.reshape(-1)
            logits = logits.reshape(-1, logits.size(-1))
        else:
            logits = model(net_input["src_tokens"], net_input.get("src_lengths"), masked_tokens=masked).logits
            targets = target[masked]  # (N,)
        loss = F.cross_entropy(logits.float(), targets, reduction="sum", ignore_index=self.padding_idx)
        logging_output: LoggingOutput = {
            "loss": loss.detach(),
            "ntokens": int(sample["ntokens"]),
            "nsentences": int(sample["nsentences"]),
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
        """``loss`` in base 2 per masked token and ``ppl`` from it (fairseq's figures)."""
        counts = reduce_counts(logging_outputs)
        loss = log_sum(logging_outputs, "loss") / counts["sample_size"] / LN2 if counts["sample_size"] else 0.0
        return {"loss": loss, "ppl": perplexity(loss), **counts}
