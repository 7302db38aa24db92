"""`make install` says what it is doing, one line per step, without pip's or npm's logs (issue 9
item 8), and shows pip's log when pip fails. Runs the real Makefile recipe with stand-ins for
python, uv and npm, so nothing is installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def make_install(tmp_path: Path, pip_exit: int) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text(f"#!/bin/sh\necho 'Collecting azure-core (pip noise)'\nexit {pip_exit}\n")
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\necho 'added 120 packages (npm noise)'\n")
    for tool in (python, npm):
        tool.chmod(0o755)
    venv = tmp_path / "venv"
    venv.mkdir()
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "install",
            f"VENV={venv}",
            f"PY={python}",
            f"UV={python}",  # the same stand-in answers for uv
            f"AZURITE={tmp_path / 'azurite'}",
            "CHROMIUM=sh",  # present, so the Chromium step stays silent whatever this machine has
        ],
        cwd=REPO,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_each_step_is_one_line_and_the_tools_logs_stay_quiet(tmp_path: Path) -> None:
    result = make_install(tmp_path, pip_exit=0)
    assert result.returncode == 0, result.stdout + result.stderr
    # the steps run at once (make -j): their lines come in either order
    assert sorted(result.stdout.splitlines()) == [
        "make install: installing Azurite into node_modules (npm)",
        "make install: installing Python packages into "
        + str(tmp_path / "venv")
        + " (pinned by constraints.txt)",
    ]
    assert "noise" not in result.stdout + result.stderr


def test_a_failing_pip_shows_its_log(tmp_path: Path) -> None:
    result = make_install(tmp_path, pip_exit=1)
    assert result.returncode != 0
    assert "Collecting azure-core (pip noise)" in result.stdout


def test_a_missing_chromium_is_named_when_apt_cannot_install_it(tmp_path: Path) -> None:
    """Not root: `make install` says the HTML report test will skip, and goes on."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bin_dir / "id").chmod(0o755)
    result = subprocess.run(
        ["make", "--no-print-directory", "chromium", "CHROMIUM=no-such-browser"],
        cwd=REPO,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "make install: chromium is missing; the HTML report test skips without it "
        "(install the chromium package)"
    ]
