"""One home per name in rotation/ (issue 24 item 2): a value declared once, the callers
importing it from the module that defines it."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rotation"
# Each consumer kind states its own service's facts (key types it accepts, ...): two services
# that happen to agree today are two facts, not a copy.
OWN_FACTS = PACKAGE / "azure" / "kinds"


def modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def constants(tree: ast.Module) -> dict[str, object]:
    """Module-level names bound to a literal collection (sets, tuples, dicts of plain values)."""
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id == "frozenset"
            ):
                value = value.args[0] if value.args else value
            try:
                found[node.targets[0].id.lstrip("_")] = ast.literal_eval(value)
            except ValueError:
                continue
    return found


def twin_constants(trees: dict[str, ast.Module]) -> list[str]:
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path, tree in trees.items():
        if Path(ROOT / path).is_relative_to(OWN_FACTS):
            continue
        for name, value in constants(tree).items():
            if isinstance(value, set | frozenset | tuple | list | dict) and len(value) > 1:
                seen[(name, repr(sorted(map(repr, value))))].append(path)
    return sorted(f"{name} in {', '.join(paths)}" for (name, _), paths in seen.items() if len(paths) > 1)


def test_a_constant_is_declared_once() -> None:
    assert twin_constants(modules()) == []


def test_the_checker_sees_a_constant_declared_twice() -> None:
    trees = {
        "rotation/a.py": ast.parse("_CODES = {408, 429}"),
        "rotation/b.py": ast.parse("CODES = frozenset({429, 408})"),
        "rotation/c.py": ast.parse("CODES = {400, 404}"),  # another value: another name's job
    }
    assert twin_constants(trees) == ["CODES in rotation/a.py, rotation/b.py"]
