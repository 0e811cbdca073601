"""The layer rules of docs/design.md, checked from the imports themselves.

A module may import its own layer or a lower one; no two modules import each other (even
through others); no module imports another module's private (`_x`) name. Function-local
imports count too: a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "harmony"

# Lowest first. The longest matching prefix decides a module's layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "leaves",
        (
            "harmony",
            "harmony.guard",
            "harmony.textsafe",
            "harmony.private_files",
            "harmony.procfs",
            "harmony.interrupts",
            "harmony.exits",
            "harmony.logs",
        ),
    ),
    ("strategies", ("harmony.strategies",)),
    ("config", ("harmony.config",)),
    ("mesh", ("harmony.mesh", "harmony.security")),
    ("actors", ("harmony.actors",)),
    ("operator", ("harmony.client", "harmony.render")),
    ("sim", ("harmony.sim",)),
    (
        "app",
        (
            "harmony.cli",
            "harmony.status",
            "harmony.unit",
            "harmony.config_check",
            "harmony.tui",
            "harmony.__main__",
        ),
    ),
]


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    return rank


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(module: str) -> list[tuple[str, str | None]]:
    """(imported module, name) for every absolute import of a harmony module."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in MODULES:
                    found.append((sub, None))
                elif node.module in MODULES:
                    found.append((node.module, alias.name))
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name in MODULES]
    return found


GRAPH = {m: {target for target, _ in _imports(m)} for m in MODULES}


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if layer_of(m) < 0] == []


def test_nothing_imports_upward() -> None:
    upward = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if layer_of(t) > layer_of(m)
    ]
    assert upward == []


def test_no_private_name_crosses_a_module() -> None:
    private = [
        f"{m} imports {t}.{name}"
        for m in MODULES
        for t, name in _imports(m)
        if name and name.startswith("_") and not name.startswith("__") and t != m
    ]
    assert private == []


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    # a package's __init__ re-exporting its modules is not a cycle of ideas
                    modules = [c for c in component if MODULES[c].name != "__init__.py"]
                    if len(modules) > 1:
                        found.append(sorted(modules))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(GRAPH[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_cycle() -> None:
    assert _cycles() == []


@pytest.mark.parametrize("module", ["harmony.mesh.outbox", "harmony.sim.runner"])
def test_the_checker_sees_imports(module: str) -> None:
    """The graph is not empty by accident (a wrong ROOT would pass every test above)."""
    assert GRAPH[module], f"{module} imports nothing?"
