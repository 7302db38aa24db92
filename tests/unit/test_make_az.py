"""`make az` installs the az CLI into its own virtualenv with uv, bytecode compiled (as pip
would: az's runs in make bench must not compile it), one line of output, uv's log only when it
fails. The real Makefile recipe with stand-ins for the venv's python and uv: nothing installed."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def make_az(tmp_path: Path, uv_exit: int) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    venv = tmp_path / "venv-az"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\nexit 0\n")
    said = tmp_path / "uv-args"
    uv = tmp_path / "uv"
    uv.write_text(f'#!/bin/sh\necho "$@" > {said}\necho "Resolved 150 packages (uv noise)"\nexit {uv_exit}\n')
    for tool in (python, uv):
        tool.chmod(0o755)
    installed = tmp_path / "installed"
    installed.touch()  # the project's own install, done: make az needs only its uv
    result = subprocess.run(
        ["make", "--no-print-directory", "az", f"AZ_VENV={venv}", f"UV={uv}", f"STAMP={installed}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return result, venv, said


def test_one_line_and_the_bytecode_compiled(tmp_path: Path) -> None:
    result, venv, said = make_az(tmp_path, uv_exit=0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"make az: installing the az CLI into {venv} (bench only; pinned by bench/requirements-az.txt)"
    ]
    args = said.read_text().split()
    assert args[:2] == ["pip", "install"] and "--compile-bytecode" in args
    assert args[args.index("--python") + 1] == f"{venv}/bin/python"  # its own venv, never .venv
    assert args[args.index("-r") + 1] == "bench/requirements-az.txt"
    assert (venv / ".installed").exists()


def test_a_failing_install_shows_uvs_log_and_leaves_no_stamp(tmp_path: Path) -> None:
    result, venv, _ = make_az(tmp_path, uv_exit=1)
    assert result.returncode != 0
    assert "uv noise" in result.stdout
    assert not (venv / ".installed").exists()
