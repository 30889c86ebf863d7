"""``--scoring wer`` equals fairseq 0.12's WER scorer (its evaluation tokenizer included) on real output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqloom.generation.config import ScoringConfig
from seqloom.generation.scoring import WerScorer, build_scorer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "wer"


@pytest.mark.parametrize("case", json.loads((FIXTURE / "fairseq.json").read_text(encoding="utf-8")),
                         ids=lambda case: ",".join(f"{k}={v}" for k, v in case["options"].items()) or "default")  # fmt: skip
def test_wer_equals_fairseqs(case: dict) -> None:
    pairs = json.loads((FIXTURE / "pairs.json").read_text(encoding="utf-8"))
    scorer = build_scorer(ScoringConfig(scoring="wer", **case["options"]))
    assert isinstance(scorer, WerScorer)
    for ref, pred in pairs:
        scorer.add_string(ref, pred)
    assert scorer.score() == pytest.approx(case["score"], abs=1e-9)
    assert scorer.result_string() == case["result_string"]


def test_wer_counts_edits_over_reference_words() -> None:
    scorer = WerScorer(ScoringConfig(scoring="wer"))
    scorer.add_string("a b c d", "a x c")  # one substitution, one deletion
    assert scorer.score() == 50.0
    empty = WerScorer(ScoringConfig(scoring="wer"))
    assert empty.score() == 0.0 and empty.result_string() == "WER: 0.00"
