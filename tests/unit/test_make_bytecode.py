"""`make test` and `make unit` write bytecode even where PYTHONDONTWRITEBYTECODE is set (as CI
images often set it: every process of the suite then compiled every module it imported), under
.venv/pycache rather than beside the sources. Runs the real Makefile with a stand-in pytest."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def make_with_stand_in(tmp_path: Path, target: str, tool: str) -> list[str]:
    """Run `make target` with `.venv/bin/<tool>` a stand-in that writes the two variables it was
    given; PYTHONDONTWRITEBYTECODE is set, as on this machine and many CI images."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()  # newer than the requirements: nothing to install
    said = tmp_path / "said"
    stand_in = venv / "bin" / tool
    stand_in.write_text(f'#!/bin/sh\necho "[$PYTHONDONTWRITEBYTECODE] [$PYTHONPYCACHEPREFIX]" > {said}\n')
    stand_in.chmod(0o755)
    azurite = tmp_path / "azurite"
    azurite.touch()
    result = subprocess.run(
        ["make", "--no-print-directory", target, f"VENV={venv}", f"AZURITE={azurite}", "CHROMIUM=sh"],
        cwd=REPO,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return said.read_text().split()


def test_make_unit_writes_bytecode_under_the_venv(tmp_path: Path) -> None:
    """`make unit` stands for the targets the Makefile names on one line (test, unit, unit-3.12,
    lint); `make test` would run lint and checkov for real."""
    assert make_with_stand_in(tmp_path, "unit", "pytest") == ["[]", f"[{tmp_path / 'venv'}/pycache]"]


def test_the_benches_write_bytecode_too(tmp_path: Path) -> None:
    """A bench's cold-start figures (`import function_app`, `rotation --help`) would otherwise
    time the compiler; `make bench-10k` stands for the bench targets."""
    assert make_with_stand_in(tmp_path, "bench-10k", "python") == ["[]", f"[{tmp_path / 'venv'}/pycache]"]
