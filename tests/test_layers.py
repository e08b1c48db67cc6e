"""The package's layers, read from its imports: one direction, no cycle.

    base      errors, result, _plan (the contract), _outcome, _checks
    define    RECORD + COMPILE: _define/*      -> base
    engine    EXECUTE one run: _engine/*       -> base
    stores    _journal, SQLite, ...: stores/*  -> engine, base
    executors threads, processes, Dask         -> engine, base
    views     graphs (and later the viewer)    -> engine, define, base
    api       _running, _workflow, cli, testing, ui, the package itself -> anything

Every import counts, at module level or inside a function (only those under
``if TYPE_CHECKING:`` do not: they never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import flowdsl

ROOT = Path(flowdsl.__file__).parent

LAYERS = {
    "base": {
        "flowdsl.errors",
        "flowdsl.result",
        "flowdsl._plan",
        "flowdsl._outcome",
        "flowdsl._checks",
    },
    "define": {"flowdsl._define"},
    "engine": {"flowdsl._engine"},
    "stores": {"flowdsl.stores"},
    "executors": {"flowdsl.executors"},
    "views": {"flowdsl.views"},
    "api": {
        "flowdsl",
        "flowdsl.__main__",
        "flowdsl._running",
        "flowdsl._sending",
        "flowdsl._workflow",
        "flowdsl._worker",
        "flowdsl.cli",
        "flowdsl.testing",
        "flowdsl.ui",
    },
}
MAY_IMPORT = {
    "base": {"base"},
    "define": {"define", "base"},
    "engine": {"engine", "base"},
    "stores": {"stores", "engine", "base"},
    "executors": {"executors", "engine", "base"},
    "views": {"views", "engine", "define", "base"},
    "api": set(LAYERS),
}


def layer_of(module: str) -> str:
    """The layer a module belongs to (the longest package prefix that names one)."""
    best = ""
    found = ""
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, found = prefix, layer
    assert found, f"{module} is in no layer: add it to LAYERS"
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) in {
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        }:
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(path: Path) -> set[str]:
    """The flowdsl modules `path` imports when it runs (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "flowdsl")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "flowdsl":
                continue
            for alias in node.names:  # `from . import _registry` imports a module
                candidate = f"{target}.{alias.name}"
                if (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    ROOT.parent / candidate.replace(".", "/") / "__init__.py"
                ).exists():
                    found.add(candidate)
                else:
                    found.add(target)
    found.discard(name)
    return found


GRAPH = {module_name(path): imports_of(path) for path in sorted(ROOT.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_each_module_imports_only_the_layers_below_it(module: str) -> None:
    """define -> base; engine -> base; stores, executors -> engine; never the other way."""
    layer = layer_of(module)
    wrong = sorted(
        f"{module} ({layer}) imports {target} ({layer_of(target)})"
        for target in GRAPH[module]
        if layer_of(target) not in MAY_IMPORT[layer]
    )
    assert [] == wrong


def test_no_module_imports_itself_through_others() -> None:
    """The import graph has no cycle (a package's __init__ importing its own modules aside)."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if module.startswith(target + ".") and module != target:
                continue  # a module importing its own package: __init__ runs first anyway
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert [] == [" -> ".join(cycle) for cycle in cycles]


def test_the_engine_knows_no_store_executor_or_definition() -> None:
    """The seams point one way: nothing in _engine names stores, executors or _define."""
    for module, targets in GRAPH.items():
        if layer_of(module) == "engine":
            assert set() == {t for t in targets if layer_of(t) in {"stores", "executors", "define"}}
