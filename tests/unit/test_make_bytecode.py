"""`make test` and `make unit` write bytecode even where PYTHONDONTWRITEBYTECODE is set (as CI
images often set it: every process of the suite then compiled every module it imported), under
.venv/pycache rather than beside the sources. Runs the real Makefile with a stand-in pytest."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_make_unit_writes_bytecode_under_the_venv(tmp_path: Path) -> None:
    """`make unit` stands for the four targets the Makefile names on one line (test, unit,
    unit-3.12, lint); `make test` would run lint and checkov for real."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()  # newer than the requirements: nothing to install
    said = tmp_path / "said"
    pytest_stand_in = venv / "bin" / "pytest"
    pytest_stand_in.write_text(
        f'#!/bin/sh\necho "[$PYTHONDONTWRITEBYTECODE] [$PYTHONPYCACHEPREFIX]" > {said}\n'
    )
    pytest_stand_in.chmod(0o755)
    azurite = tmp_path / "azurite"
    azurite.touch()
    result = subprocess.run(
        ["make", "--no-print-directory", "unit", f"VENV={venv}", f"AZURITE={azurite}", "CHROMIUM=sh"],
        cwd=REPO,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert said.read_text().split() == ["[]", f"[{venv}/pycache]"]
