"""The package's import graph, read from the source with `ast` (nothing is imported).

Every `import` counts, also those inside functions (a lazy import still ties the two modules
together). The rules: no import cycles between our modules; no `from ours import _private`
(a leading-underscore name is a module's own business: make it public or move the logic); and
`engine.models` never imports `engine.rewards` (models are loaded without knowing who scores them).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "sessions", "streamt1_cli")


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every .py of our packages under `root`."""
    return {
        module_name(p, root): p for pkg in PACKAGES if (root / pkg).is_dir() for p in sorted((root / pkg).rglob("*.py"))
    }


def is_ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """`from .x import y` inside `importer` -> the absolute name of `.x`."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def scan(modules: dict[str, Path]) -> tuple[list[Edge], list[str]]:
    """(edges between our modules, private-name imports as 'module:line: from X import _y')."""
    edges: list[Edge] = []
    private: list[str] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges += [Edge(name, a.name, node.lineno) for a in node.names if is_ours(a.name)]
            elif isinstance(node, ast.ImportFrom):
                source = absolute(node.module, node.level, name, path.name == "__init__.py")
                if not is_ours(source):
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules:  # `from pkg import submodule`
                        edges.append(Edge(name, sub, node.lineno))
                        continue
                    edges.append(Edge(name, source, node.lineno))
                    if is_private(alias.name):
                        private.append(f"{name}:{node.lineno}: from {source} import {alias.name}")
    return [e for e in edges if e.target != e.source], private


def cycles(edges: list[Edge]) -> list[list[str]]:
    """One concrete cycle (as a module path, first module repeated at the end) per strongly
    connected component of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)

    found = []
    for component in components:
        start = min(component)
        # Breadth-first within the component back to `start`: a shortest cycle through it.
        parent: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in parent:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & component):
                    if w not in parent:
                        parent[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        while path[-1] != start or len(path) == 1:
            path.append(parent[path[-1]])
        found.append(path[::-1])
    return found


def edge_lines(edges: list[Edge], cycle: list[str]) -> str:
    """A cycle as text, with the line of each module's (first) import of the next one."""
    lines = {(e.source, e.target): e.line for e in sorted(edges, key=lambda e: -e.line)}
    return " -> ".join(f"{a} (line {lines[(a, b)]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_the_scan_on_a_made_up_package(tmp_path):
    (tmp_path / "engine" / "sub").mkdir(parents=True)
    files = {
        "engine/__init__.py": "",
        "engine/a.py": "import os\n\ndef f():\n    from engine import b\n    from .b import _x, __version__\n",
        "engine/b.py": "from engine.sub import c\n_x = 1\n",
        "engine/sub/__init__.py": "from . import c\nfrom .. import a\n",
        "engine/sub/c.py": "import engine.a\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    modules = our_modules(tmp_path)
    assert set(modules) == {"engine", "engine.a", "engine.b", "engine.sub", "engine.sub.c"}
    edges, private = scan(modules)
    assert {(e.source, e.target) for e in edges} == {
        ("engine.a", "engine.b"),  # inside a function; `from engine import b` is the submodule
        ("engine.b", "engine.sub.c"),
        ("engine.sub", "engine.sub.c"),
        ("engine.sub", "engine.a"),
        ("engine.sub.c", "engine.a"),
    }
    assert private == ["engine.a:5: from engine.b import _x"]  # dunders are fine
    assert cycles(edges) == [["engine.a", "engine.b", "engine.sub.c", "engine.a"]]


def test_the_scan_sees_the_package():
    modules = our_modules()
    assert {"engine.stream", "engine.models.checkpoints", "sessions.store", "streamt1_cli.app"} <= set(modules)
    edges, _ = scan(modules)
    # A lazy import inside a function counts.
    assert any(e.source == "engine.models.factory" and e.target == "engine.models.checkpoints" for e in edges)


def test_no_import_cycles():
    edges, _ = scan(our_modules())
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(edge_lines(edges, c) for c in found)


def test_no_private_names_imported_across_modules():
    _, private = scan(our_modules())
    assert not private, "private names imported from other modules:\n" + "\n".join(private)


def test_models_never_import_rewards():
    edges, _ = scan(our_modules())

    def within(module: str, package: str) -> bool:
        return module == package or module.startswith(package + ".")

    bad = [
        f"{e.source}:{e.line} imports {e.target}"
        for e in edges
        if within(e.source, "engine.models") and within(e.target, "engine.rewards")
    ]
    assert not bad, "engine.models must not import engine.rewards:\n" + "\n".join(bad)


def test_cycle_finder_on_a_known_graph():
    edges = [Edge("a", "b", 1), Edge("b", "c", 2), Edge("c", "a", 3), Edge("c", "d", 4), Edge("d", "e", 5)]
    assert cycles(edges) == [["a", "b", "c", "a"]]
    assert cycles(edges[3:]) == []
