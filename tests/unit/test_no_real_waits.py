"""Tests run on injected clocks and sleeps (issue 24 item 4): a `time.sleep` in tests/ is only
for a real process or socket, which no clock of ours moves, and its line says why."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SLEEP = re.compile(r"\btime\.sleep\(")


def unexplained_sleeps(text: str) -> list[int]:
    """Line numbers of `time.sleep(` calls without a comment on the same line."""
    return [n for n, line in enumerate(text.splitlines(), 1) if SLEEP.search(line) and "#" not in line]


def test_every_real_wait_in_the_tests_says_why() -> None:
    found = {
        str(path.relative_to(TESTS)): lines
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != Path(__file__).name and (lines := unexplained_sleeps(path.read_text()))
    }
    assert found == {}


def test_the_check_sees_an_unexplained_sleep() -> None:
    assert unexplained_sleeps("x = 1\ntime.sleep(0.2)\ntime.sleep(1)  # a real process\n") == [2]
