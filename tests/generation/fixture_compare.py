"""Compares seqloom generate/interactive output with fairseq's: same lines, tokens exact, scores within 1e-4."""

from __future__ import annotations

import gzip
from pathlib import Path

SCORED = ("H-", "D-")


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def compare_lines(expected: list[str], got: list[str], *, tol: float = 1e-4, skip: tuple[str, ...] = ()) -> list[str]:
    """Differences between two outputs (empty if they agree): texts exact, H/D/P scores within ``tol``."""
    expected = [line for line in expected if not line.startswith(skip)]
    got = [line for line in got if not line.startswith(skip)]
    problems = []
    if len(expected) != len(got):
        problems.append(f"{len(expected)} lines expected, {len(got)} written")
    for n, (e, g) in enumerate(zip(expected, got), 1):
        if e == g:
            continue
        ef, gf = e.split("\t"), g.split("\t")
        if ef[0] != gf[0] or len(ef) != len(gf):
            problems.append(f"line {n}: expected {e!r}, got {g!r}")
        elif ef[0].startswith(SCORED):
            if ef[2] != gf[2] or abs(float(ef[1]) - float(gf[1])) > tol:
                problems.append(f"line {n}: expected {e!r}, got {g!r}")
        elif ef[0].startswith("P-"):
            ev, gv = ef[1].split(), gf[1].split()
            if len(ev) != len(gv) or any(abs(float(a) - float(b)) > tol + 1e-4 for a, b in zip(ev, gv)):
                problems.append(f"line {n}: expected {e!r}, got {g!r}")
        else:
            problems.append(f"line {n}: expected {e!r}, got {g!r}")
        if len(problems) > 10:
            break
    return problems
