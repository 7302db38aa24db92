"""Run the `rotation` CLI in-process, as a user types it (click's CliRunner)."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from rotation.doors.cli import main


def invoke(*args: str, input: str | None = None) -> tuple[int, str]:
    """The exit code and what the command printed."""
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.output


def cli(*args: str) -> tuple[int, Any]:
    """The command with `-o json`: its exit code and parsed output, or the text when the output
    is not JSON (so a test sees what was printed instead)."""
    code, output = invoke("-o", "json", *args)
    try:
        return code, json.loads(output)
    except ValueError:
        return code, output
