"""One home per name in rotation/ (issue 24 item 2): a value declared once, the callers
importing it from the module that defines it."""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rotation"
# Each consumer kind states its own service's facts (key types it accepts, ...): two services
# that happen to agree today are two facts, not a copy.
OWN_FACTS = PACKAGE / "azure" / "kinds"


def modules() -> dict[str, ast.Module]:
    """rotation/'s modules by path."""
    return {path: tree for path, tree in callers().items() if path.startswith("rotation/")}


def literal(value: ast.expr) -> object:
    """The value of a literal collection, `frozenset({...})` or `re.compile("...")`; raises
    ValueError for anything computed."""
    if isinstance(value, ast.Call) and not value.keywords:
        called = ast.unparse(value.func)
        if called == "frozenset" and len(value.args) == 1:
            return ast.literal_eval(value.args[0])
        if called == "re.compile":
            return ("re.compile", *(ast.literal_eval(a) for a in value.args))
    return ast.literal_eval(value)


def constants(tree: ast.Module) -> dict[str, object]:
    """Module-level names bound to a literal collection or pattern."""
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id.lstrip("_")] = literal(node.value)
            except ValueError:
                continue
    return found


def normal(value: object) -> str:
    """A collection's value, order aside where it has none."""
    if isinstance(value, set | frozenset):
        return repr(sorted(map(repr, value)))
    if isinstance(value, dict):
        return repr(sorted((repr(k), repr(v)) for k, v in value.items()))
    return repr(tuple(value)) if isinstance(value, list | tuple) else repr(value)


def twin_constants(trees: dict[str, ast.Module]) -> list[str]:
    """One value bound at module level in two modules, under any names: one of them should
    import the other's."""
    seen: dict[str, list[str]] = defaultdict(list)
    for path, tree in trees.items():
        if Path(ROOT / path).is_relative_to(OWN_FACTS):
            continue
        for name, value in constants(tree).items():
            if isinstance(value, set | frozenset | tuple | list | dict) and len(value) > 1:
                seen[normal(value)].append(f"{path}:{name}")
    return sorted(" = ".join(places) for places in seen.values() if len(places) > 1)


def test_a_constant_is_declared_once() -> None:
    assert twin_constants(modules()) == []


def test_the_checker_sees_a_constant_declared_twice() -> None:
    trees = {
        "rotation/a.py": ast.parse("_CODES = {408, 429}"),
        "rotation/b.py": ast.parse("TRANSIENT = frozenset({429, 408})"),
        "rotation/c.py": ast.parse("CODES = {400, 404}"),  # the same name for another value
        "rotation/d.py": ast.parse("import re\n_GUID = re.compile(r'^[0-9a-f-]{36}\\Z')"),
        "rotation/e.py": ast.parse("import re\nUUID = re.compile(r'^[0-9a-f-]{36}\\Z')"),
        "rotation/f.py": ast.parse("RATE = {'reads': 25.0}\nLOW = {'reads': 25}"),  # equal keys only
    }
    assert twin_constants(trees) == [
        "rotation/a.py:CODES = rotation/b.py:TRANSIENT",
        "rotation/d.py:GUID = rotation/e.py:UUID",
    ]


def defined(tree: ast.Module) -> set[str]:
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}


def copies_of_the_model(trees: dict[str, ast.Module]) -> list[str]:
    """Functions and classes of model/ defined again elsewhere, public or behind an underscore."""
    model = {
        name: path
        for path, tree in trees.items()
        if path.startswith("rotation/model/")
        for name in defined(tree)
        if not name.startswith("_")
    }
    return sorted(
        f"{path} defines {name} again ({model[name.lstrip('_')]} has it)"
        for path, tree in trees.items()
        if not path.startswith("rotation/model/")
        for name in defined(tree)
        if name.lstrip("_") in model
    )


def test_what_the_model_defines_is_not_defined_again() -> None:
    assert copies_of_the_model(modules()) == []


def test_the_checker_sees_a_private_copy_of_a_model_function() -> None:
    trees = {
        "rotation/model/times.py": ast.parse("def iso(m): ...\ndef _helper(): ..."),
        "rotation/storage/x.py": ast.parse("def _iso(m): ...\ndef helper(): ..."),
    }
    assert copies_of_the_model(trees) == [
        "rotation/storage/x.py defines _iso again (rotation/model/times.py has it)"
    ]


# Who imports from rotation/: the product and everything around it.
CALLERS = ("rotation", "tests", "bench", "devstack", "tools", "function_app.py")


@cache  # parsed once for the tests that read them all
def callers() -> dict[str, ast.Module]:
    paths = [
        p for c in CALLERS for p in ([ROOT / c] if c.endswith(".py") else sorted((ROOT / c).rglob("*.py")))
    ]
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text(), str(p)) for p in paths}


def bound(tree: ast.Module) -> set[str]:
    """Names a module defines itself (functions, classes, assignments at any depth of its
    top-level statements), not those it imports."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def module_trees(trees: dict[str, ast.Module]) -> dict[str, ast.Module]:
    """rotation/ modules by dotted name; a package's __init__ (its face) is left out: it hands
    its submodules' names on by design."""
    return {
        path.removesuffix(".py").replace("/", "."): tree
        for path, tree in trees.items()
        if path.startswith("rotation/") and not path.endswith("__init__.py")
    }


def borrowed_names(trees: dict[str, ast.Module], product: dict[str, ast.Module]) -> list[str]:
    """`from rotation.a import n` where module a does not define n: n has another home."""
    defined = {name: bound(tree) for name, tree in product.items()}
    return sorted(
        f"{path}:{node.lineno} takes {alias.name} from {node.module}"
        for path, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in defined
        for alias in node.names
        if alias.name not in defined[node.module] and f"{node.module}.{alias.name}" not in defined
    )


def private_imports(trees: dict[str, ast.Module]) -> list[str]:
    """`from rotation.a import _n`: a name its module keeps to itself, used elsewhere."""
    return sorted(
        f"{path}:{node.lineno} imports {node.module}.{alias.name}"
        for path, tree in trees.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rotation"
        for alias in node.names
        if alias.name.startswith("_")
    )


def test_names_are_imported_from_the_module_that_defines_them() -> None:
    trees = callers()
    assert borrowed_names(trees, module_trees(trees)) == []


def test_no_private_name_is_imported_from_another_module() -> None:
    assert private_imports(callers()) == []


def test_the_checkers_see_a_re_export_and_a_private_import() -> None:
    trees = {
        "rotation/model/errors.py": ast.parse("class ErrorInfo: ...\nSTATUS = {408}"),
        "rotation/azure/retry.py": ast.parse("from rotation.model.errors import ErrorInfo\ndef _wait(): ..."),
        "tests/t.py": ast.parse(
            "from rotation.azure.retry import ErrorInfo, _wait\nfrom rotation.model.errors import STATUS"
        ),
    }
    assert borrowed_names(trees, module_trees(trees)) == [
        "tests/t.py:1 takes ErrorInfo from rotation.azure.retry"
    ]
    assert private_imports(trees) == ["tests/t.py:1 imports rotation.azure.retry._wait"]


def twin_functions(trees: dict[str, ast.Module]) -> list[str]:
    """Module-level functions with the same parameters and body in two places (docstrings
    aside, two statements or more): one of them should import the other."""
    seen: dict[str, list[str]] = defaultdict(list)
    for path, tree in trees.items():
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            body = node.body[1:] if ast.get_docstring(node) else node.body
            if len(body) >= 2:
                shape = ast.dump(node.args) + ast.dump(ast.Module(body=body, type_ignores=[]))
                seen[shape].append(f"{path}:{node.name}")
    return sorted(" = ".join(places) for places in seen.values() if len(places) > 1)


def test_no_function_is_written_twice() -> None:
    assert twin_functions(modules()) == []


def test_the_checker_sees_a_function_written_twice() -> None:
    twice = "def {}(values):\n    '''{}'''\n    counts = {{}}\n    return counts"
    trees = {
        "rotation/a.py": ast.parse(twice.format("count", "one")),
        "rotation/b.py": ast.parse(twice.format("_count", "another docstring")),
        "rotation/c.py": ast.parse("def short(values):\n    return values"),
        "rotation/d.py": ast.parse("def short(values):\n    return values"),  # one line: no copy worth a home
    }
    assert twin_functions(trees) == ["rotation/a.py:count = rotation/b.py:_count"]
