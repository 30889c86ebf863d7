"""Shared test helpers: where fairseq's reference fixtures are, and small-thread torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# fairseq's real outputs: ../shared/fixtures/fairseq beside the checkout (CI has it), or the copy
# under tests/fixtures/fairseq (the subset the tests read), or $SEQLOOM_FAIRSEQ_FIXTURES.
_CANDIDATES = [
    os.environ.get("SEQLOOM_FAIRSEQ_FIXTURES", ""),
    str(REPO.parent / "shared" / "fixtures" / "fairseq"),
    str(REPO / "tests" / "fixtures" / "fairseq"),
]


def _find_fixtures() -> Path | None:
    for c in _CANDIDATES:
        if c and (Path(c) / "README.md").exists():
            return Path(c)
    return None


FAIRSEQ_FIXTURES = _find_fixtures()


@pytest.fixture(scope="session")
def fairseq_fixtures() -> Path:
    """The folder of fairseq's reference outputs (see its README.md)."""
    if FAIRSEQ_FIXTURES is None:
        message = (
            "fairseq's reference fixtures were not found: set SEQLOOM_FAIRSEQ_FIXTURES to a copy of "
            "shared/fixtures/fairseq, or place shared/ beside the checkout"
        )
        if os.environ.get("CI"):  # CI always has them: a missing folder there is a broken set-up
            pytest.fail(message)
        pytest.skip(message)
    return FAIRSEQ_FIXTURES


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
