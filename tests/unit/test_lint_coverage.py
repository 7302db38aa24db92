"""`make lint` type-checks every Python folder of the repository, not the product alone: mypy runs
with pyproject's `files` (the Makefile passes none), and that list names each top-level folder
or file holding Python."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# infra/check_azure_yaml.py runs in infra/check.sh's own venv (.venv-checkov), with its packages
OWN_VENV = {"infra"}


def python_roots() -> set[str]:
    """Top-level folders holding a .py file anywhere below them, and top-level .py files."""
    roots = {path.name for path in ROOT.glob("*.py")}
    for folder in ROOT.iterdir():
        hidden = folder.name.startswith((".", "__")) or folder.name == "node_modules"
        if folder.is_dir() and not hidden and next(folder.rglob("*.py"), None) is not None:
            roots.add(folder.name)
    return roots - OWN_VENV


def test_mypy_checks_every_python_folder() -> None:
    checked = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"])
    assert python_roots() - checked == set()
    assert {"rotation", "tests", "devstack", "bench", "tools"} <= checked


def test_make_lint_runs_mypy_on_pyprojects_list() -> None:
    recipe = re.search(r"(?m)^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text())
    assert recipe, "the Makefile has no lint target"
    mypy = [line.split() for line in recipe[1].splitlines() if "bin/mypy" in line]
    assert mypy == [["$(VENV)/bin/mypy"]]  # no paths: pyproject's files decide
