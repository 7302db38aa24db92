"""`rotation plan K | head -1` ends with the command's own exit code, and nothing more is printed."""

from __future__ import annotations

import os
import subprocess
import sys

from tests import scenarios as s
from tests.integration.cli_support import KEY, NEW, OLD, load_estate


def person_needed_estate(stack) -> None:
    registries = [s.registry(f"reg{i}", s.key_id("acr-cmk", OLD if i % 2 else NEW)) for i in range(40)]
    load_estate(stack, registries, [s.group("nightly-report", "acr-cmk", OLD)])


def plan_into_pipe(read_lines: int) -> tuple[int, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "rotation", "plan", KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert process.stdout is not None and process.stderr is not None
    for _ in range(read_lines):
        process.stdout.readline()
    process.stdout.close()  # what head does after its lines
    stderr = process.stderr.read().decode()
    return process.wait(timeout=60), stderr


def test_head_after_the_first_line_keeps_exit_code_3(stack) -> None:
    person_needed_estate(stack)
    code, stderr = plan_into_pipe(1)
    assert code == 3, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "unexpected" not in stderr


def test_a_reader_gone_before_anything_was_written_keeps_it_too(stack) -> None:
    person_needed_estate(stack)
    code, stderr = plan_into_pipe(0)
    assert code == 3, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
