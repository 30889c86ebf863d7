"""``--criterion sentence_prediction``: cross-entropy of a classification head, or squared error (regression).

The model is called as fairseq calls it, ``model(**net_input, features_only=True,
classification_head_name=...)``, and returns ``(B, num_classes)`` scores in ``DecoderOut.logits``. Losses are
summed (natural log); ``sample_size`` is the number of sentences; ``accuracy`` (percent) is reported for
classification.

GLUE's metrics, as fairseq's ``--report-*`` flags add them to validation (percent, one decimal): ``mcc``
(Matthews correlation, CoLA), ``acc_and_f1`` and ``f1`` (F1 of label ``1``, MRPC and QQP),
``pearson_and_spearman``, ``pearson`` and ``spearman`` (STS-B). They need every prediction of the pass: the
logging outputs carry them as lists, which the meters concatenate instead of summing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqloom import registry
from seqloom.config.options import field
from seqloom.criterions.base import LN2, Criterion, LoggingOutput, log_sum, reduce_counts
from seqloom.data.dictionary import Dictionary


@dataclass(kw_only=True)
class SentencePredictionCriterionConfig:
    """Options of ``--criterion sentence_prediction`` (fairseq's)."""

    classification_head_name: str = field(
        "sentence_classification_head",
        help="which of the model's classification heads scores the examples (made if missing)",
    )
    regression_target: bool = field(False, help="regression (mean squared error) instead of classification")
    report_mcc: bool = field(False, help="report the Matthews correlation of the predictions at validation")
    report_acc_and_f1: bool = field(False, help="report F1 (of label 1) and the mean of accuracy and F1 at validation")
    report_pearson_and_spearman: bool = field(
        False, help="report the Pearson and Spearman correlations of regression predictions at validation"
    )


def label_values(label_dictionary: Dictionary) -> list[int | None]:
    """Each class index's label as an integer, None where it is not one (labels are the label dictionary's
    symbols after its specials; fairseq's ``--report-*`` metrics read them as integers)."""
    symbols = [label_dictionary[i] for i in range(label_dictionary.nspecial, len(label_dictionary))]
    return [int(s) if s.lstrip("-").isdigit() else None for s in symbols]


def matthews_corrcoef(pred: np.ndarray, targ: np.ndarray) -> float:
    """The (multiclass) Matthews correlation coefficient; 0 where it is undefined."""
    classes, both = np.unique(np.concatenate([targ, pred]), return_inverse=True)
    t, p = both[: len(targ)], both[len(targ) :]
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, (t, p), 1.0)
    true_sum, pred_sum = confusion.sum(axis=1), confusion.sum(axis=0)
    n, correct = confusion.sum(), np.trace(confusion)
    cov_tp = correct * n - true_sum @ pred_sum
    cov_pp, cov_tt = n * n - pred_sum @ pred_sum, n * n - true_sum @ true_sum
    return 0.0 if cov_pp * cov_tt == 0 else float(cov_tp / np.sqrt(cov_tt * cov_pp))


def f1_of_label_one(pred: np.ndarray, targ: np.ndarray) -> float:
    """F1 of the positive label ``1``; 0 when it is never predicted nor true."""
    tp = float(np.sum((pred == 1) & (targ == 1)))
    fp, fn = float(np.sum((pred == 1) & (targ != 1))), float(np.sum((pred != 1) & (targ == 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inverse, ranks)
    return (sums / counts)[inverse]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float("nan") if denominator == 0 else float(x @ y / denominator)


def glue_metrics(logs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The ``--report-*`` metrics of the predictions the logging outputs carry (percent, one decimal)."""
    pred = np.asarray([v for log in logs for v in log.get("pred", [])], dtype=np.float64)
    targ = np.asarray([v for log in logs for v in log.get("targ", [])], dtype=np.float64)
    if not len(pred):
        return {}
    out: dict[str, float] = {}
    if any(log.get("report_mcc") for log in logs):
        out["mcc"] = round(matthews_corrcoef(pred, targ) * 100, 1)
    if any(log.get("report_acc_and_f1") for log in logs):
        f1 = f1_of_label_one(pred, targ)
        out["acc_and_f1"] = round((float(np.mean(pred == targ)) + f1) / 2 * 100, 1)
        out["f1"] = round(f1 * 100, 1)
    if any(log.get("report_pearson_and_spearman") for log in logs):
        r, rho = pearson(pred, targ), pearson(_ranks(pred), _ranks(targ))
        out["pearson_and_spearman"] = round((r + rho) / 2 * 100, 1)
        out["pearson"], out["spearman"] = round(r * 100, 1), round(rho * 100, 1)
    return out


def example_metrics(logs: Sequence[LoggingOutput | dict[str, Any]], *, accuracy_digits: int) -> dict[str, float]:
    """What the sentence criterions report: ``loss`` in base 2 per example, ``nll_loss`` per token where that
    differs (fairseq's), ``accuracy`` in percent rounded as fairseq rounds it per criterion, and the counts."""
    counts = reduce_counts(logs)
    loss_sum = log_sum(logs, "loss")
    out = {"loss": loss_sum / counts["sample_size"] / LN2 if counts["sample_size"] else 0.0}
    if counts["sample_size"] != counts["ntokens"] and counts["ntokens"]:
        out["nll_loss"] = loss_sum / counts["ntokens"] / LN2
    if any("ncorrect" in log for log in logs) and counts["nsentences"]:
        out["accuracy"] = round(100.0 * log_sum(logs, "ncorrect") / counts["nsentences"], accuracy_digits)
    return {**out, **counts}


@registry.CRITERIONS.register("sentence_prediction", config=SentencePredictionCriterionConfig)
class SentencePredictionCriterion(Criterion):
    def __init__(self, cfg: SentencePredictionCriterionConfig | None = None, *, padding_idx: int,
                 sentence_avg: bool = False) -> None:  # fmt: skip
        super().__init__(padding_idx=padding_idx, sentence_avg=sentence_avg)
        self.cfg = cfg = cfg or SentencePredictionCriterionConfig()
        self.reports = [flag for flag in ("report_mcc", "report_acc_and_f1", "report_pearson_and_spearman")
                        if getattr(cfg, flag)]  # fmt: skip
        self.label_values: list[int | None] | None = None  # class index -> label, from bind_task

    def bind_task(self, task: object) -> None:
        """Reads the labels of the task's label dictionary (the ``--report-*`` metrics compare label values)."""
        labels = getattr(task, "label_dictionary", None)
        if labels is not None and not self.cfg.regression_target:
            self.label_values = label_values(labels)

    def forward(self, model: nn.Module, sample: dict[str, Any]) -> tuple[Tensor, int, LoggingOutput]:
        name = self.cfg.classification_head_name
        heads = getattr(model, "classification_heads", None)
        if heads is None or name not in heads:
            raise ValueError(f"--criterion sentence_prediction: the model has no classification head {name!r} "
                             "(set --classification-head-name)")  # fmt: skip
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
        if self.reports and not model.training:
            self._keep_predictions(logits, targets, logging_output)
        return loss, sample_size, logging_output  # type: ignore[return-value]

    def _keep_predictions(self, logits: Tensor, targets: Tensor, logging_output: dict[str, Any]) -> None:
        """Lists of this batch's predictions and targets (label values) for the ``--report-*`` metrics."""
        if self.cfg.regression_target:
            logging_output["pred"] = logits.detach().view(-1).float().cpu().tolist()
            logging_output["targ"] = targets.detach().view(-1).float().cpu().tolist()
        else:
            preds, targs = logits.argmax(dim=1).cpu().tolist(), targets.view(-1).cpu().tolist()
            logging_output["pred"], logging_output["targ"] = self._labels(preds), self._labels(targs)
        for flag in self.reports:
            logging_output[flag] = 1

    def _labels(self, classes: list[int]) -> list[int]:
        values = self.label_values
        if values is None:
            return classes
        out = []
        for c in classes:
            value = values[c] if c < len(values) else None
            if value is None:
                raise ValueError(f"--report-mcc/--report-acc-and-f1: class {c}'s label is not an integer; these "
                                 "metrics compare integer labels (e.g. 0 and 1), as fairseq's do")  # fmt: skip
            out.append(value)
        return out

    @staticmethod
    def reduce_metrics(logging_outputs: Sequence[LoggingOutput | dict[str, Any]]) -> dict[str, float]:
        """``loss`` in base 2 per sentence; ``nll_loss`` per token as fairseq; ``accuracy`` in percent."""
        return {**example_metrics(logging_outputs, accuracy_digits=3), **glue_metrics(logging_outputs)}
