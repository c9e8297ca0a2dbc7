"""No import cycles inside a checked package: its modules form a one-directional graph.

The graph is read from the source with `ast`, so every import counts: module-level ones, those
inside functions (a late import is still a dependency, and one is how a cycle hides) and those
under `if TYPE_CHECKING:`. Only edges between modules of the package under test are followed.
`PACKAGES` lists the packages held to it: the whole of `s3proxy`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["s3proxy"]


def modules_of(package: str) -> dict[str, Path]:
    """Every module of `package` (sub-packages included): dotted name -> source file."""
    base = ROOT.joinpath(*package.split("."))
    found: dict[str, Path] = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules `module` imports, as dotted names (`from pkg import sub` is an edge to pkg.sub)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return out


def import_graph(package: str) -> dict[str, set[str]]:
    modules = modules_of(package)
    known = set(modules)
    return {name: imports_of(name, path, known) & known for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with a cycle (Tarjan), each sorted; a self-import counts."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_cycles_and_nothing_else() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_graph_sees_relative_late_and_submodule_imports() -> None:
    graph = import_graph("s3proxy.kms")
    assert "s3proxy.kms.keys" in graph["s3proxy.kms.admin"]  # `from . import keys, lifecycle`
    assert "s3proxy.kms.keystore.base" in graph["s3proxy.kms.keystore.memory"]  # `from .base import Entry`
    assert "s3proxy.kms.errors" in graph["s3proxy.kms.keystore.memory"]  # `from ..errors import ...`


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    graph = import_graph(package)
    assert len(graph) > 1
    assert cycles(graph) == []
