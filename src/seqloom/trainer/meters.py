"""Training statistics with fairseq's field names, rounding and formatting.

Criterions return logging outputs (dicts of sums: ``loss`` and ``nll_loss`` in nats summed over the
batch, ``ntokens``, ``nsentences``, ``sample_size``). Summing those dicts over a log interval, an epoch or
a validation pass and reducing once gives exactly fairseq's sample-size-weighted averages:
``loss = sum(loss) / sum(sample_size) / ln 2`` (base 2), ``nll_loss = sum(nll_loss) / sum(ntokens) / ln 2``,
``ppl = 2 ** nll_loss``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

LN2 = math.log(2)
# keys of a logging output that are counts to add up, not statistics to re-derive
COUNT_KEYS = ("ntokens", "nsentences", "sample_size")


def sum_logging_outputs(outputs: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Adds the numeric values of several logging outputs key by key."""
    total: dict[str, float] = {}
    for out in outputs:
        for key, value in out.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
                continue
            total[key] = total.get(key, 0.0) + float(value)
    return total


def concat_logging_lists(outputs: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Concatenates the list values of several logging outputs key by key (per-example values, such as the
    predictions that ``--report-mcc`` needs, which a sum would lose)."""
    total: dict[str, list[Any]] = {}
    for out in outputs:
        for key, value in out.items():
            if isinstance(value, list):
                total.setdefault(key, []).extend(value)
    return total


def reduce_losses(sums: Mapping[str, float]) -> dict[str, float]:
    """fairseq's loss statistics (base 2) from summed logging outputs; other sums pass through as ratios."""
    sample_size = sums.get("sample_size", 0.0) or 1.0
    ntokens = sums.get("ntokens", 0.0) or 1.0
    stats: dict[str, float] = {}
    if "loss" in sums:
        stats["loss"] = round(sums["loss"] / sample_size / LN2, 3)
    if "nll_loss" in sums:
        nll = sums["nll_loss"] / ntokens / LN2
        stats["nll_loss"] = round(nll, 3)
        stats["ppl"] = perplexity(nll)
    elif "loss" in sums:
        stats["ppl"] = perplexity(sums["loss"] / sample_size / LN2)
    if "n_correct" in sums and "total" in sums and sums["total"] > 0:
        stats["accuracy"] = round(100.0 * sums["n_correct"] / sums["total"], 3)
    return stats


def perplexity(loss_base2: float) -> float:
    try:
        return round(2**loss_base2, 2)
    except OverflowError:
        return float("inf")


Reducer = Callable[[Sequence[Mapping[str, Any]]], Mapping[str, float]]


def reduce_with(reduce: Reducer, sums: Mapping[str, Any]) -> dict[str, float]:
    """A criterion's ``reduce_metrics`` on summed outputs (with any concatenated lists), with fairseq's display
    rounding, counts dropped."""
    out: dict[str, float] = {}
    for key, value in reduce([sums]).items():
        if key in COUNT_KEYS or key in ("n_correct", "total"):
            continue
        out[key] = round(value, 3) if key in ("loss", "nll_loss", "accuracy") else value
    return out


class MeterState(TypedDict):
    """What a checkpoint keeps of a :class:`Meter` (its ``extra_state["meters"]`` entries)."""

    sums: dict[str, float]
    lists: dict[str, list[Any]]  # per-example values of the logging outputs, whatever a criterion puts there
    steps: int
    gnorm_sum: float
    clipped: int
    busy_seconds: float


@dataclass
class Meter:
    """Accumulates updates (or validation batches) over one span: an interval, an epoch, a pass.

    ``reduce`` is the criterion's ``reduce_metrics`` (default: :func:`reduce_losses`).
    """

    reduce: Reducer | None = None
    sums: dict[str, float] = field(default_factory=dict)
    lists: dict[str, list[Any]] = field(default_factory=dict)  # list values of the outputs, concatenated
    steps: int = 0  # updates (train) or batches (valid) seen
    gnorm_sum: float = 0.0
    clipped: int = 0
    busy_seconds: float = 0.0  # time inside train/valid steps
    start: float = field(default_factory=time.perf_counter)

    def add(self, logging_output: Mapping[str, Any], *, gnorm: float | None = None, clipped: bool = False) -> None:
        for key, value in sum_logging_outputs([logging_output]).items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        for key, values in concat_logging_lists([logging_output]).items():
            self.lists.setdefault(key, []).extend(values)
        self.steps += 1
        if gnorm is not None:
            self.gnorm_sum += gnorm
        self.clipped += int(clipped)

    def reset(self) -> None:
        """Starts a new span (fairseq's ``reset_meters``)."""
        self.sums, self.lists, self.steps, self.gnorm_sum, self.clipped, self.busy_seconds = {}, {}, 0, 0.0, 0, 0.0
        self.start = time.perf_counter()

    def state_dict(self) -> MeterState:
        """What a checkpoint keeps of the span so far (its sums and counts; not its clock)."""
        return {"sums": dict(self.sums), "lists": {k: list(v) for k, v in self.lists.items()}, "steps": self.steps,
                "gnorm_sum": self.gnorm_sum, "clipped": self.clipped, "busy_seconds": self.busy_seconds}  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continues the span a checkpoint saved (a resumed epoch's summary then covers the whole epoch)."""
        self.sums = {str(k): float(v) for k, v in state.get("sums", {}).items()}
        self.lists = {str(k): list(v) for k, v in state.get("lists", {}).items()}
        self.steps = int(state.get("steps", 0))
        self.gnorm_sum = float(state.get("gnorm_sum", 0.0))
        self.clipped = int(state.get("clipped", 0))
        self.busy_seconds = float(state.get("busy_seconds", 0.0))

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def stats(self, *, ups: bool = True) -> dict[str, float]:
        """loss, nll_loss, ppl, wps, ups, wpb, bsz (fairseq's rounding; validation has no ``ups``)."""
        out = (
            reduce_with(self.reduce, {**self.sums, **self.lists})
            if self.reduce is not None
            else reduce_losses(self.sums)
        )
        seconds = max(self.elapsed(), 1e-9)
        steps = max(self.steps, 1)
        ntokens = self.sums.get("ntokens", 0.0)
        out["wps"] = round(ntokens / seconds, 1)
        if ups:
            out["ups"] = round(self.steps / seconds, 2)
        out["wpb"] = round(ntokens / steps, 1)
        out["bsz"] = round(self.sums.get("nsentences", 0.0) / steps, 1)
        return out

    def train_stats(self, *, num_updates: int, lr: float, clip_norm: float, wall: float) -> dict[str, float]:
        """The fields of fairseq's ``train_inner``/``train`` lines, in its order."""
        out = self.stats()
        steps = max(self.steps, 1)
        out["num_updates"] = num_updates
        out["lr"] = lr
        out["gnorm"] = round(self.gnorm_sum / steps, 3)
        if clip_norm > 0:
            out["clip"] = round(100.0 * self.clipped / steps, 1)
        out["train_wall"] = round(self.busy_seconds)
        out["wall"] = round(wall)
        return out


def format_stat(value: object) -> str:
    """fairseq's number formatting (``'{:g}'``), e.g. 0.000645497, 1475, 8.368."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
