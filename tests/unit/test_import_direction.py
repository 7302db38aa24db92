"""Imports in rotation/ run one way (DESIGN.md section 3): doors → service → estate → run →
azure / storage → config → model, and form no cycle. Every import counts, also those inside
functions and under TYPE_CHECKING: a type-only import upward still ties a lower room to a
higher one."""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rotation"

# Higher numbers may import lower ones; rooms on one level may not import each other.
LAYERS = {
    "rotation.model": 0,
    "rotation.config": 1,  # at the bottom with the model: settings may use model values, not the reverse
    "rotation.telemetry": 1,
    "rotation.concurrency": 1,  # thread pools that keep the caller's context  # spans and metrics: every room may report, it imports nothing of ours
    "rotation.azure": 2,
    "rotation.storage": 2,
    "rotation.run": 3,  # one key's run
    "rotation.estate": 4,  # the estate-wide features stand on the run, never the reverse
    "rotation.service": 5,
    "rotation.doors": 6,
}
OUTSIDE = ("emulator", "devstack", "tests", "bench", "tools", "function_app")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room(module: str) -> str | None:
    return next((r for r in LAYERS if module == r or module.startswith(r + ".")), None)


def imports_of(path: Path, modules: Collection[str] = ()) -> set[str]:
    """Every module `path` imports, made absolute (`from a.b import c` gives a.b and a.b.c;
    `from .x import y` in package p gives p.x and p.x.y). With `modules` known, `from a import b`
    of a submodule b names a.b alone: a package is imported before its submodules anyway,
    which makes no edge of its own."""
    found: set[str] = set()
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            named = {f"{module}.{alias.name}" for alias in node.names}
            found.update(named)
            if not named <= set(modules):
                found.add(module)
    return found


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = {module_name(p): p for p in root.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        # A module never imports itself; a submodule importing its own package is an edge
        # like any other (the package's __init__ may import the submodule back).
        edges[name] = {t for t in imports_of(path, modules) if t in modules and t != name}
    return edges


def upward(edges: dict[str, set[str]]) -> list[str]:
    wrong = []
    for source, targets in edges.items():
        mine = room(source)
        for target in targets:
            theirs = room(target)
            if mine is None or theirs is None or mine == theirs:
                continue
            if LAYERS[theirs] >= LAYERS[mine]:
                wrong.append(f"{source} imports {target} ({mine} may not import {theirs})")
    return sorted(wrong)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_imports_run_downward() -> None:
    assert upward(graph()) == []


def test_imports_form_no_cycle() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize("root", ["emulator", "devstack"])
def test_the_local_stack_forms_no_cycle(root: str) -> None:
    """Imports inside functions count: one hidden there is still a knot."""
    assert cycles(graph(ROOT / root)) == []


def test_the_emulator_imports_nothing_of_the_host_around_it() -> None:
    """devstack/ runs the emulator; the emulator (a stand-in for Azure) never needs devstack/."""
    strays = sorted(
        f"{module_name(p)} imports {t}"
        for p in (ROOT / "emulator").rglob("*.py")
        for t in imports_of(p)
        if t.split(".")[0] in ("devstack", "rotation", "tests", "bench", "tools")
    )
    assert strays == []


def test_the_product_imports_nothing_outside_it() -> None:
    strays = sorted(
        f"{module_name(p)} imports {t}"
        for p in PACKAGE.rglob("*.py")
        for t in imports_of(p)
        if t.split(".")[0] in OUTSIDE
    )
    assert strays == []


# The checker itself: it must see what it is meant to refuse.
@pytest.mark.parametrize(
    ("edges", "problem"),
    [
        ({"rotation.azure.outcomes": {"rotation.run.policy"}}, "upward"),
        ({"rotation.estate.sweep": {"rotation.service"}}, "upward"),
        ({"rotation.azure.x": {"rotation.storage.audit"}}, "upward"),  # siblings stay apart
        ({"rotation.run.a": {"rotation.run.b"}, "rotation.run.b": {"rotation.run.a"}}, "cycle"),
        # a package whose __init__ imports a submodule that imports the package back
        ({"rotation.azure.k": {"rotation.azure.k.x"}, "rotation.azure.k.x": {"rotation.azure.k"}}, "cycle"),
    ],
)
def test_the_checker_refuses_what_it_should(edges: dict[str, set[str]], problem: str) -> None:
    assert (upward(edges) if problem == "upward" else cycles(edges)) != []


def test_the_checker_allows_downward_imports() -> None:
    edges = {
        "rotation.doors.api": {"rotation.run.reconcile"},
        "rotation.run.reconcile": {"rotation.model.ids"},
    }
    assert upward(edges) == [] and cycles(edges) == []
