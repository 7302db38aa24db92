"""Start a run the way the CLI does and read what it did: its audit records and its steps."""

from __future__ import annotations

from typing import Any

from rotation.doors.worker import run_request
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.model.results import RunResult
from tests import scenarios as s


def rotate(stack: Any, key: str = s.key_id("acr-cmk")) -> str:
    """One CLI run of `key` (the scenarios' usual key) through the worker; its run id."""
    request = new_request(parse_key_id(key), "cli", "pytest")
    run_request(stack.service(), request)
    return request.request_id


def records(stack: Any, **filters: Any) -> list[dict[str, Any]]:
    """The audit records matching `filters` (AuditStore.query's), up to 2000."""
    found, _ = stack.service().audit.query(top=2000, **filters)
    return found


def by_name(result: RunResult) -> dict[str, Any]:
    """A run's steps by the target's resource name."""
    return {step.target.rsplit("/", 1)[1]: step for step in result.steps}


def sweep_checked(stack: Any) -> dict[str, dict[str, Any]]:
    """The sweep's `sweep-checked` audit records, by key id."""
    return {r["keyId"]: r for r in records(stack) if r["kind"] == "sweep-checked"}
