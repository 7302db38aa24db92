"""A scenario loaded at start, or over POST /scenario, is baselined: a version already inside
the near-expiry window fires nothing until the clock moves it across a threshold."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import cli
from emulator.runtime import Emulator, write_env_file
from tests.scenarios import key, scenario, version


def estate(exp: str) -> dict[str, Any]:
    return scenario({"acr-cmk": key(version("v1", created="-300d", exp=exp))})


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[Emulator, Path]]:
    with Emulator(estate("+20d"), state_dir=tmp_path) as emulator:
        env_file = tmp_path / "emulator.env"
        write_env_file(env_file, emulator.env)
        yield emulator, env_file


def advance(env_file: Path, amount: str) -> list[str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["--env-file", str(env_file), "clock", "advance", amount]) == 0
    return [event["eventType"].rsplit(".", 1)[-1] for event in json.loads(printed.getvalue())["fired"]]


def test_a_version_already_near_expiry_at_start_fires_nothing_until_it_expires(started) -> None:
    _, env_file = started
    assert advance(env_file, "1s") == []
    assert advance(env_file, "21d") == ["KeyExpired"]


def test_a_scenario_posted_later_is_baselined_too(started) -> None:
    emulator, env_file = started
    emulator.admin.load_scenario(estate("+40d"))
    assert advance(env_file, "1s") == []
    assert advance(env_file, "11d") == ["KeyNearExpiry"]


def test_admin_output_into_a_closed_pipe_exits_0_quietly(started) -> None:
    """`python -m emulator state | head`, the reader gone first: no traceback, exit 0."""
    import subprocess
    import sys

    _, env_file = started
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--env-file", str(env_file), "state"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=30) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_help_lists_serve_and_every_admin_command() -> None:
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-m", "emulator", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    ).stdout
    for command in ("serve", "fault", "clock", "state", "calls", "deliveries", "activity", "timer"):
        assert f"  {command} " in shown, command
