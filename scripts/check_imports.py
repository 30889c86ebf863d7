"""Checks seqloom's import graph: no cycle between packages, and the layering rules.

Every ``import`` statement counts, including those inside functions: a lazy import is still a
dependency. The graph is built from the source with ``ast`` (nothing is imported), at two grains:

* modules (``seqloom.generation.search``): no cycle at all (``MAX_MODULE_CYCLE = 1``: a strongly connected
  group of two or more files is a finding; when two modules need each other, the shared piece needs a home
  of its own);
* packages (``seqloom.generation``): no cycle at all, and no edge a rule below forbids, directly
  or through other packages.

Run ``python scripts/check_imports.py`` (exit status 1 and a list of findings when a rule breaks);
``--graph`` prints the package graph as a Mermaid diagram. ``tests/test_import_rules.py`` runs it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "seqloom"
MAX_MODULE_CYCLE = 1  # the largest strongly connected group of modules allowed: 1, no cycle

# package -> packages it must never reach, directly or transitively.
FORBIDDEN: dict[str, frozenset[str]] = {
    "modules": frozenset({"tasks", "cli", "trainer", "hub"}),
    "models": frozenset({"tasks", "cli", "trainer"}),
    "data": frozenset({"tasks", "cli", "trainer", "models"}),
    "generation": frozenset({"cli"}),
    "hub": frozenset({"cli"}),
    "config": frozenset({"cli"}),
    "trainer": frozenset({"cli"}),
}


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, and where."""

    source: str
    target: str
    line: int
    in_function: bool


@dataclass
class Graph:
    """Module-level import edges of the package, with the statements behind them."""

    modules: set[str] = field(default_factory=set)
    imports: list[Import] = field(default_factory=list)

    def edges(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in self.modules}
        for imp in self.imports:
            if imp.target in self.modules and imp.target != imp.source:
                out[imp.source].add(imp.target)
        return out


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(name: str, modules: set[str]) -> str | None:
    """The longest known module that ``name`` starts with (``a.b.c`` -> ``a.b`` if ``a.b.c`` is a name)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def statements(tree: ast.Module) -> Iterable[tuple[ast.AST, bool]]:
    """Each import node with whether it sits inside a function."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            stack.append((child, nested))


def targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    # `from pkg import mod` imports pkg.mod when it is a module, pkg otherwise.
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def build_graph(src: Path = SRC) -> Graph:
    graph = Graph()
    files = sorted((src / ROOT).rglob("*.py"))
    graph.modules = {module_name(f, src) for f in files}
    for f in files:
        module = module_name(f, src)
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for node, in_function in statements(tree):
            names = targets(node, module, f.name == "__init__.py")
            hits = {resolve(n, graph.modules) for n in names if n.startswith(ROOT)}
            # `from pkg import name` where name is an attribute: the package itself is the edge.
            if isinstance(node, ast.ImportFrom) and len(hits - {None}) > 1:
                hits.discard(resolve(names[-1], graph.modules))
            for target in hits - {None}:
                graph.imports.append(Import(module, target, node.lineno, in_function))  # type: ignore[arg-type]
    return graph


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; groups of two or more nodes (cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def package_edges(graph: Graph) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for source, ends in graph.edges().items():
        src_pkg = package_of(source)
        out.setdefault(src_pkg, set())
        for end in ends:
            dst_pkg = package_of(end)
            out.setdefault(dst_pkg, set())
            if dst_pkg != src_pkg and src_pkg and dst_pkg:
                out[src_pkg].add(dst_pkg)
    out.pop("", None)
    for ends in out.values():
        ends.discard("")
    return out


def reachable(edges: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every package reachable from ``start``, with one path to it."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return paths


def witness(graph: Graph, src_pkg: str, dst_pkg: str) -> str:
    for imp in graph.imports:
        if package_of(imp.source) == src_pkg and package_of(imp.target) == dst_pkg:
            where = " (inside a function)" if imp.in_function else ""
            return f"{imp.source}:{imp.line} imports {imp.target}{where}"
    return "?"


def findings(graph: Graph) -> list[str]:
    problems: list[str] = []
    for group in strongly_connected(graph.edges()):
        if len(group) > MAX_MODULE_CYCLE:
            problems.append(f"module cycle of {len(group)} files: {', '.join(group)}")
    pkg_edges = package_edges(graph)
    for group in strongly_connected(pkg_edges):
        problems.append(f"package cycle: {' <-> '.join(group)}")
    for pkg, banned in sorted(FORBIDDEN.items()):
        for target, path in sorted(reachable(pkg_edges, pkg).items()):
            if target in banned:
                hops = "; ".join(witness(graph, a, b) for a, b in zip(path, path[1:], strict=False))
                problems.append(f"{pkg} reaches {target} via {' -> '.join(path)}: {hops}")
    return problems


def mermaid(graph: Graph) -> str:
    lines = ["flowchart TD"]
    for src_pkg, ends in sorted(package_edges(graph).items()):
        lines.extend(f"    {src_pkg} --> {dst}" for dst in sorted(ends))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check seqloom's import graph for cycles and layering.")
    parser.add_argument("--graph", action="store_true", help="print the package graph (Mermaid) and exit")
    args = parser.parse_args(argv)
    graph = build_graph()
    if args.graph:
        print(mermaid(graph))
        return 0
    problems = findings(graph)
    for problem in problems:
        print(problem)
    lazy = sum(imp.in_function for imp in graph.imports)
    status = "FAILED" if problems else "ok"
    print(
        f"import rules {status}: {len(graph.modules)} modules, {len(graph.imports)} imports ({lazy} inside functions)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
