"""The product wheel ships rotation/ only: emulator/, devstack/, tests/ and bench/ stay in the
repository (the packages setuptools would find under pyproject's include patterns)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shipped() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = config["packages"]["find"]["include"]
    packages = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in ROOT.glob("**/__init__.py")
        if not any(part.startswith(".") or part == "node_modules" for part in init.relative_to(ROOT).parts)
    }
    return {p for p in packages if any(fnmatch.fnmatchcase(p, pattern) for pattern in include)}


def test_the_wheel_ships_the_product_only() -> None:
    packages = shipped()
    assert "rotation" in packages and "rotation.azure.kinds" in packages
    assert {p.split(".")[0] for p in packages} == {"rotation"}


def test_every_product_package_is_shipped() -> None:
    on_disk = {".".join(i.parent.relative_to(ROOT).parts) for i in (ROOT / "rotation").glob("**/__init__.py")}
    assert on_disk <= shipped()
