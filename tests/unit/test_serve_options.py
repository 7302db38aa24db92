"""`python -m devstack serve` (make serve): its help points at the project's scenario doc, and
the app's audit JSON lines go to a file unless asked for on the console (issue 23 items 4, 5)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.__main__ import route_audit_lines

REPO = Path(__file__).resolve().parents[2]


def test_serve_help_points_at_docs_scenario_md() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "devstack", "serve", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "docs/scenario.md" in shown and "DESIGN.md" not in shown
    assert "--audit-log" in shown


def test_audit_lines_go_to_the_file_and_not_to_the_console(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    audit = logging.getLogger("rotation.audit")
    saved = (list(audit.handlers), audit.propagate)
    path = tmp_path / "nested" / "audit.jsonl"
    try:
        route_audit_lines(path)
        with caplog.at_level(logging.INFO):
            audit.info(json.dumps({"audit": {"kind": "run-started"}}))
            logging.getLogger("devstack.host").warning("Moving message to queue 'x-poison'.")
        for handler in audit.handlers:
            handler.flush()
        assert [json.loads(line)["audit"]["kind"] for line in path.read_text().splitlines()] == [
            "run-started"
        ]
        assert [r.name for r in caplog.records] == ["devstack.host"]  # the console sees the short line only
    finally:
        for handler in audit.handlers[len(saved[0]) :]:
            handler.close()
        audit.handlers[:], audit.propagate = saved
