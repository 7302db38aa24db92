"""The function app keeps azure-core's per-request log lines off under the worker's INFO root
logger: formatting and forwarding two records per SDK call cost CPU on every target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HTTP_LOG = "azure.core.pipeline.policies.http_logging_policy"


def enabled_after_import(logger: str) -> bool:
    """Whether `logger` logs INFO in a fresh process whose root logger is at INFO (the Python
    worker's level for app logs) once function_app is imported."""
    probe = (
        "import logging; logging.getLogger().setLevel(logging.INFO); import function_app; "
        f"print(logging.getLogger({logger!r}).isEnabledFor(logging.INFO))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1] == "True"


def test_azure_cores_request_lines_are_off_in_the_function_app() -> None:
    assert not enabled_after_import(HTTP_LOG)


def test_the_apps_own_lines_stay_on() -> None:
    assert enabled_after_import("rotation.run")
    assert enabled_after_import("azure.identity")  # only the per-request lines are turned off
