"""The package's layering, read from its source: each stage imports only the stages before it, and no two modules
import each other, even through function-level imports (which hide a cycle from Python, not from a reader)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ssl_tune

PACKAGE = Path(ssl_tune.__file__).parent
# the dataset registration: data/base.py imports the loader modules, which register with it
ALLOWED_CYCLES = [{f"ssl_tune.data.{m}" for m in ("base", "cifar", "imagefolder", "parquet", "synthetic")}]


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports anywhere in it (top level, functions, TYPE_CHECKING blocks)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {name: _imports(path, modules) - {name} for name, path in files.items()}
    for name in modules:  # importing a.b.c runs the packages a and a.b first
        parent = name.rsplit(".", 1)[0]
        if parent in modules and name != parent:
            graph[name].discard(parent)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_but_the_dataset_registration():
    found = cycles(import_graph())
    unexpected = [c for c in found if not any(c <= allowed for allowed in ALLOWED_CYCLES)]
    assert not unexpected, f"import cycles: {[sorted(c) for c in unexpected]}"


LATER = [  # (a stage, a later stage it must not import)
    ("ssl_tune.data", "ssl_tune.engine"),
    ("ssl_tune.data", "ssl_tune.tune"),
    ("ssl_tune.data", "ssl_tune.config"),
    ("ssl_tune.engine", "ssl_tune.tune"),
    ("ssl_tune.tracking", "ssl_tune.tune"),
    ("ssl_tune.methods", "ssl_tune.engine"),
    ("ssl_tune.models", "ssl_tune.engine"),
]


@pytest.mark.parametrize(("lower", "upper"), LATER)
def test_a_stage_does_not_import_a_later_one(lower, upper):
    graph = import_graph()
    leaks = sorted(
        f"{m} -> {d}" for m, deps in graph.items() if m.startswith(lower) for d in deps if d.startswith(upper)
    )
    assert not leaks, leaks


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
