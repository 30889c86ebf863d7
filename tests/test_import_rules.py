"""The package's import graph: no cycle between packages and the layering rules (scripts/check_imports.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import check_imports  # noqa: E402


def test_the_package_has_no_cycle_and_keeps_its_layers() -> None:
    graph = check_imports.build_graph()
    assert check_imports.findings(graph) == []


def test_the_checker_sees_imports_inside_functions_and_a_broken_rule(tmp_path: Path) -> None:
    """A lazy import is an import: a model module importing a task inside a function breaks the rules."""
    pkg = tmp_path / "seqloom"
    for sub in ("models", "tasks", "modules"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "m.py").write_text("def build():\n    from seqloom.tasks import t\n    return t\n")
    (pkg / "tasks" / "t.py").write_text("from seqloom.models import m\n")
    graph = check_imports.build_graph(tmp_path)
    assert any(i.in_function and i.target == "seqloom.tasks.t" for i in graph.imports)
    problems = check_imports.findings(graph)
    assert any(p.startswith("package cycle: models <-> tasks") for p in problems)
    assert any(p.startswith("models reaches tasks") for p in problems)


def test_the_checker_finds_a_cycle_of_two_modules_inside_one_package(tmp_path: Path) -> None:
    """Two modules of one package that import each other (one of them lazily) are a finding."""
    pkg = tmp_path / "seqloom" / "data"
    pkg.mkdir(parents=True)
    (tmp_path / "seqloom" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from seqloom.data import b\n")
    (pkg / "b.py").write_text("def f():\n    from seqloom.data.a import g\n    return g\n")
    (pkg / "c.py").write_text("from seqloom.data import a, b\n")
    problems = check_imports.findings(check_imports.build_graph(tmp_path))
    assert problems == ["module cycle of 2 files: seqloom.data.a, seqloom.data.b"]
