"""No import cycles inside the package, function-level imports included.

Why: an import placed inside a function to dodge a cycle hides a design knot (two modules
that each own half of a concept) and breaks the day someone moves it to the top.  This test
parses every module under ``sparserl/`` with :mod:`ast` -- top-level, function-level and
``TYPE_CHECKING`` imports alike -- builds the package-internal import graph and fails, naming
the modules, if any cycle exists.

``from . import x`` counts as importing the submodule ``x`` when ``x`` is one (the usual
convention of import checkers); importing a name from a package counts as importing the
package's ``__init__``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sparserl

ROOT = Path(sparserl.__file__).parent


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package-internal modules that module ``name`` (file ``path``) imports anywhere."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                # ``import a.b.c`` imports a, a.b and a.b.c; the deepest known one is what is used
                parts = alias.name.split(".")
                for k in range(len(parts), 0, -1):
                    if ".".join(parts[:k]) in known:
                        found.add(".".join(parts[:k]))
                        break
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imported_modules(name, path, known) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    detail = "; ".join(" <-> ".join(c) + " (" + ", ".join(
        f"{a} imports {', '.join(sorted(graph[a] & set(c)))}" for a in c) + ")" for c in found)
    assert not found, f"import cycles: {detail}"


def test_the_graph_sees_function_level_imports():
    # the checker itself must see what it is meant to see: the lazy import in sparserl/__init__
    # (inside __getattr__) and a module-level one
    graph = import_graph()
    assert "sparserl.api" in graph["sparserl"]
    assert "sparserl.model_file" in graph["sparserl.api"]
    assert len(graph) > 50  # every module was parsed


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
    ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b"], ["c", "d"]]),
])
def test_cycle_finder_finds_cycles(graph, expected):
    assert sorted(cycles(graph)) == expected
