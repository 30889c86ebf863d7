"""The fairseq mt checkpoint loaded through the hub once per session, and fairseq's hub.json results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from seqloom.hub import TransformerModel, TranslationHub


@pytest.fixture(scope="session")
def mt_kwargs(fairseq_fixtures: Path) -> dict[str, Any]:
    """fairseq's from_pretrained arguments of hub.json, with the fixture's paths."""
    mt = fairseq_fixtures / "mt"
    return dict(
        checkpoint_file="checkpoint_best.pt",
        data_name_or_path=str(mt / "data-bin"),
        tokenizer="moses",
        bpe="subword_nmt",
        bpe_codes=str(mt / "text" / "bpe.codes"),
    )


@pytest.fixture(scope="session")
def hub_json(fairseq_fixtures: Path) -> dict[str, Any]:
    return json.loads((fairseq_fixtures / "mt" / "hub.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def mt_hub(fairseq_fixtures: Path, mt_kwargs: dict[str, Any]) -> TranslationHub:
    return TransformerModel.from_pretrained(str(fairseq_fixtures / "mt" / "checkpoints"), **mt_kwargs)
