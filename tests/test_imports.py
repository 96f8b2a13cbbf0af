"""The floor plan: mailbot's modules import one another without a circle, counting the imports
hidden inside functions (a circle there works until someone moves one line to the top), and
the loop (runner, daemon) is driven from the entry points, not from the steps it drives."""
from __future__ import annotations

import ast
from pathlib import Path

import mailbot

PACKAGE = Path(mailbot.__file__).parent

# what may drive the loop: the command line, the daemon, and the demo's month (tests/bench too)
LOOP = {"runner", "daemon"}
DRIVERS = {"cli", "daemon", "scenario"}


def import_graph(package: Path, name: str = "mailbot") -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its text (top level or inside a
    function, `from . import a`, `from .a import x`, `import mailbot.a`, `from mailbot import a`)."""
    modules = {p.stem for p in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith(name + ".")}
            elif isinstance(node, ast.ImportFrom):
                parts = (node.module or "").split(".") if node.module else []
                if node.level == 0:  # absolute: only mailbot's own modules count
                    if not parts or parts[0] != name:
                        continue
                    parts = parts[1:]
                elif node.level > 1:  # above the package
                    continue
                found |= {parts[0]} if parts else {a.name for a in node.names}
        graph[path.stem] = (found & modules) - {path.stem}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each circle as a path a -> b -> ... -> a (one per strongly connected group, Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_path(graph, group) for group in groups]


def _path(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest circle through the group's first module, to name in the failure."""
    start = min(group)
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & group):
            if w == start:
                return path + [start]
            if w not in path:
                paths.append(path + [w])
    return sorted(group)


def test_no_import_circle():
    found = cycles(import_graph(PACKAGE))
    assert found == [], "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_only_the_entry_points_drive_the_loop():
    """A step (schedule, digest, city, ...) returns what it did; delivering and printing is cli's."""
    graph = import_graph(PACKAGE)
    drivers = {module for module, deps in graph.items() if deps & LOOP} - LOOP
    assert drivers <= DRIVERS, f"modules importing {sorted(LOOP)}: {sorted(drivers - DRIVERS)}"


def test_a_circle_inside_a_function_is_found(tmp_path):
    """The check can fail: a circle closed by an import inside a function, in every spelling."""
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "alpha.py").write_text("from . import beta\n")
    (tmp_path / "beta.py").write_text("def later():\n    from .gamma import thing\n    return thing\n")
    (tmp_path / "gamma.py").write_text("def run():\n    import mailbot.alpha\n    from mailbot import delta\n")
    (tmp_path / "delta.py").write_text("import os\nfrom .. import elsewhere\n")
    graph = import_graph(tmp_path)
    assert graph == {"__init__": set(), "alpha": {"beta"}, "beta": {"gamma"}, "gamma": {"alpha", "delta"},
                     "delta": set()}
    assert cycles(graph) == [["alpha", "beta", "gamma", "alpha"]]
