"""``--criterion sentence_ranking``: cross-entropy over the options of multiple-choice examples.

Each option sequence gets one score from the one-output head ``--ranking-head-name``; an example's ``N`` scores
are its logits ``(B, N)``. All ``B * N`` sequences go through the encoder in one call (fairseq makes ``N`` calls:
the scores are the same, the padding differs). The loss is summed (natural log), ``sample_size`` is the number of
examples, ``accuracy`` (percent, one decimal) counts the examples whose best-scored option is the right one.
``--save-predictions FILE`` writes ``id<TAB>predicted option[<TAB>right option]`` per example scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom import registry
from seqloom.config.options import field
from seqloom.criterions.base import Criterion, LoggingOutput
from seqloom.criterions.sentence_prediction import example_metrics


@dataclass(kw_only=True)
class SentenceRankingCriterionConfig:
    """Options of ``--criterion sentence_ranking`` (fairseq's)."""

    ranking_head_name: str = field(
        "sentence_classification_head", help="which of the model's classification heads scores the options"
    )
    save_predictions: Optional[str] = field(
        None, help="write each scored example's id, predicted option and right option (tab-separated) to this file"
    )


def stacked_options(sample: dict[str, Any], pad: int) -> tuple[Tensor, int]:
    """The option sequences of ``net_input1`` .. ``net_inputN``, right-padded to one length ``S``:
    ``(N * B, S)``, option-major (rows ``k * B .. k * B + B - 1`` are option ``k + 1``), and ``N``."""
    options: list[Tensor] = []
    while f"net_input{len(options) + 1}" in sample:
        options.append(sample[f"net_input{len(options) + 1}"]["src_tokens"])  # (B, S_k)
    if not options:
        raise ValueError("--criterion sentence_ranking: the batch has no net_input1 .. net_inputN; use it with "
                         "--task sentence_ranking")  # fmt: skip
    length = max(tokens.size(1) for tokens in options)
    padded = [F.pad(tokens, (0, length - tokens.size(1)), value=pad) for tokens in options]  # (B, S) each
    return torch.cat(padded), len(options)  # (N * B, S)


@registry.CRITERIONS.register("sentence_ranking", config=SentenceRankingCriterionConfig)
class SentenceRankingCriterion(Criterion):
    def __init__(self, cfg: SentenceRankingCriterionConfig | None = None, *, padding_idx: int,
                 sentence_avg: bool = False) -> None:  # fmt: skip
        super().__init__(padding_idx=padding_idx, sentence_avg=sentence_avg)
        self.cfg = cfg or SentenceRankingCriterionConfig()
        if self.cfg.save_predictions is not None:
            Path(self.cfg.save_predictions).write_text("")  # started empty, then appended to batch by batch

    def forward(self, model: nn.Module, sample: dict[str, Any]) -> tuple[Tensor, int, LoggingOutput]:
        name = self.cfg.ranking_head_name
        heads = getattr(model, "classification_heads", None)
        if heads is None or name not in heads:
            raise ValueError(f"--criterion sentence_ranking: the model has no classification head {name!r} "
                             "(set --ranking-head-name)")  # fmt: skip
        tokens, n = stacked_options(sample, self.padding_idx)  # (N * B, S)
        scores = model(tokens, features_only=True, classification_head_name=name).logits  # (N * B, 1)
        logits = scores.view(n, -1).t()  # (B, N)
        sample_size = int(logits.size(0))
        targets = sample.get("target")
        logging_output: dict[str, Any] = {"ntokens": int(sample["ntokens"]), "nsentences": sample_size,
                                          "sample_size": sample_size}  # fmt: skip
        if targets is not None:
            targets = targets.view(-1)
            loss = F.nll_loss(F.log_softmax(logits, dim=-1, dtype=torch.float32), targets, reduction="sum")
            logging_output["ncorrect"] = (logits.argmax(dim=1) == targets).sum().detach()
        else:  # an unlabelled split (a test set scored for --save-predictions)
            loss = logits.new_zeros((), dtype=torch.float32).requires_grad_()
        logging_output["loss"] = loss.detach()
        if self.cfg.save_predictions is not None:
            self._save(sample["id"], logits.argmax(dim=1), targets)
        return loss, sample_size, logging_output  # type: ignore[return-value]

    def _save(self, ids: Tensor, preds: Tensor, targets: Tensor | None) -> None:
        assert self.cfg.save_predictions is not None
        columns = [ids.tolist(), preds.tolist()] + ([targets.tolist()] if targets is not None else [])
        with open(self.cfg.save_predictions, "a", encoding="utf-8") as f:
            f.writelines("\t".join(map(str, row)) + "\n" for row in zip(*columns))

    @staticmethod
    def reduce_metrics(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
        """``loss`` in base 2 per example; ``nll_loss`` per token as fairseq; ``accuracy`` in percent."""
        return example_metrics(logging_outputs, accuracy_digits=1)
