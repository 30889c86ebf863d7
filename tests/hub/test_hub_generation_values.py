"""The hub refuses out-of-range generation values by name, and a beam too wide for the memory with the
estimate (the issue's ``beam=100000`` that died allocating 14.9 GB)."""

from __future__ import annotations

import math

import pytest

import seqloom.generation.memory as memory
from seqloom.hub import TranslationHub


def test_out_of_range_values_are_value_errors_naming_the_option(mt_hub: TranslationHub) -> None:
    with pytest.raises(ValueError, match=r"generation option lenpen=nan: --lenpen must be a finite number"):
        mt_hub.translate("hello", lenpen=math.nan)
    with pytest.raises(ValueError, match=r"generation option temperature=0: --temperature must be greater than 0"):
        mt_hub.translate("hello", temperature=0)
    with pytest.raises(ValueError, match=r"generation option beam=-3: --beam must be at least 1"):
        mt_hub.translate("hello", beam=-3)


def test_a_beam_too_wide_for_the_memory_is_refused_with_the_estimate(
    mt_hub: TranslationHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 100 * 10**6)  # 100 MB free
    sentences = ["hello world"] * 8
    with pytest.raises(ValueError) as err:
        mt_hub.translate(sentences, beam=100000)
    message = str(err.value)
    assert message.startswith("--beam 100000: decoding 8 sentence(s) at once would need about ")
    assert "more than the 0.1 GB free on cpu; use a smaller --beam" in message
    need = float(message.split("need about ")[1].split(" GB")[0])
    assert need > 0.5  # 8 x 2055 hypotheses x (log-probs over 2,056 words + caches)
    assert len(mt_hub.translate(sentences[:2], beam=2)) == 2  # a small beam still fits
