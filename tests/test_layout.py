"""The package's imports run one way: no cycles, entry points on top importing nothing from
each other, one owner for the checkpoint format."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "fastnst"
ENTRY_POINTS = {
    "fastnst.train",
    "fastnst.optimize",
    "fastnst.stylize",
    "fastnst.export",
    "fastnst.app",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> the fastnst modules it imports anywhere (functions included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = _imports()
    # A package imports its own modules (fastnst.data re-exports); that is not a cycle.
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_entry_points_import_nothing_from_each_other():
    graph = _imports()
    assert ENTRY_POINTS <= set(graph)
    for entry in ENTRY_POINTS:
        assert not graph[entry] & ENTRY_POINTS, (entry, graph[entry] & ENTRY_POINTS)
    # ...and nothing below them imports an entry point.
    for name, imported in graph.items():
        if name not in ENTRY_POINTS:
            assert not imported & ENTRY_POINTS, (name, imported & ENTRY_POINTS)


def test_one_module_owns_the_checkpoint_format():
    owners = [p.name for p in PACKAGE.rglob("*.py") if "CHECKPOINT_KIND =" in p.read_text()]
    assert owners == ["checkpoint.py"]
