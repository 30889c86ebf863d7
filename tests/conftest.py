"""Shared test helpers: where fairseq's reference fixtures are, small-thread torch, and a skip summary.

A test may skip for one of two reasons only: it needs a CUDA device, or it needs the fairseq peer venv
(to make references on the spot). Everything else it needs ships in ``tests/fixtures``, so a fresh clone
runs every compatibility test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# fairseq's real outputs, trimmed to what the tests read (see tests/fixtures/fairseq/README.md);
# $SEQLOOM_FAIRSEQ_FIXTURES may name another copy laid out the same way (e.g. the full, untrimmed set).
FAIRSEQ_FIXTURES = Path(os.environ.get("SEQLOOM_FAIRSEQ_FIXTURES") or REPO / "tests" / "fixtures" / "fairseq")
# GPT-2's BPE files (encoder.json, vocab.bpe), as fairseq's BART commands use them.
GPT2_BPE = REPO / "tests" / "fixtures" / "gpt2-bpe"
# fairseq's interpreter, for the tests that run fairseq itself.
PEER_PYTHON = Path(os.environ.get("SEQLOOM_FAIRSEQ_PYTHON") or REPO.parent / "peer-venvs" / "fs" / "bin" / "python")

# Skip reasons start with one of these, so that the summary can count them.
NEEDS_CUDA = "needs a CUDA device"
NEEDS_PEER = "needs the fairseq peer venv"


@pytest.fixture(scope="session")
def fairseq_fixtures() -> Path:
    """The folder of fairseq's reference outputs (see its README.md)."""
    if not (FAIRSEQ_FIXTURES / "README.md").is_file():
        where = "SEQLOOM_FAIRSEQ_FIXTURES" if os.environ.get("SEQLOOM_FAIRSEQ_FIXTURES") else "the checkout"
        pytest.fail(f"fairseq's reference fixtures are missing: no README.md in {FAIRSEQ_FIXTURES} ({where})")
    return FAIRSEQ_FIXTURES


@pytest.fixture(scope="session")
def gpt2_bpe() -> Path:
    """The folder holding GPT-2's ``encoder.json`` and ``vocab.bpe``."""
    return GPT2_BPE


@pytest.fixture(scope="session")
def peer_python() -> Path:
    """fairseq's interpreter; the test skips where the peer venv is absent."""
    if not PEER_PYTHON.is_file():
        pytest.skip(f"{NEEDS_PEER}: no {PEER_PYTHON} (set SEQLOOM_FAIRSEQ_PYTHON to fairseq 0.12's python)")
    return PEER_PYTHON


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line saying why tests skipped: CUDA, the peer venv, or (never expected) anything else."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    counts = {NEEDS_CUDA: 0, NEEDS_PEER: 0, "other": 0}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        key = next((k for k in (NEEDS_CUDA, NEEDS_PEER) if reason.startswith(k)), "other")
        counts[key] += 1
    line = (
        f"{len(skipped)} skipped: {counts[NEEDS_CUDA]} need a CUDA device, {counts[NEEDS_PEER]} the fairseq peer venv"
    )
    if counts["other"]:
        line += f", {counts['other']} for other reasons (see -rs)"
    terminalreporter.write_line(line)
