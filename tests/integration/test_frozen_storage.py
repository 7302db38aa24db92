"""Storage that accepts connections and never answers (a SIGSTOPped Azurite) must not hold a
door: each one fails clearly within its budget and leaves nothing half-written (issue 17,
section 2). The budget is shortened to 2 s; the bound each test waits is five times that,
only so that a regression fails instead of hanging the suite."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.data.tables import TableClient

import function_app
from devstack.functions_host import deliver_event_grid
from rotation.azure.budget import BudgetExhausted
from rotation.doors import worker
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.storage.queue import encode
from tests import scenarios as s
from tests.conftest import dead_port
from tests.support.http import call

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
BUDGET = 2.0
BOUND = 5 * BUDGET


class FrozenListener:
    """Accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def frozen() -> Iterator[FrozenListener]:
    listener = FrozenListener()
    yield listener
    listener.close()


def point(connection_string: str, port: int, services: tuple[str, ...] = ("Blob", "Queue", "Table")) -> str:
    for service in services:
        connection_string = re.sub(
            rf"({service}Endpoint=http://127\.0\.0\.1:)\d+", rf"\g<1>{port}", connection_string
        )
    return connection_string


def bounded(fn: Callable[[], Any]) -> Any:
    """Run fn in a thread; it must return (or raise) within BOUND. Returns its result or error."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert outcome, f"still blocked after {BOUND}s"
    return outcome[0]


def scenario(stack) -> None:
    key = s.key(s.version("old", created="-200d"), s.version("new", created="-1d"))
    stack.load(
        s.scenario({"acr-cmk": key}, registries=[s.registry("reg1", s.key_id("acr-cmk", s.vid("old")))])
    )


@pytest.fixture
def budgeted(stack):
    scenario(stack)
    stack.service()  # storage prepared while it still answers
    stack.set(ROTATION_DOOR_BUDGET_SECONDS=str(BUDGET), ROTATION_WORKER_BUDGET_SECONDS=str(BUDGET))
    return stack


def test_event_door_fails_within_its_budget_when_storage_freezes(budgeted, frozen) -> None:
    budgeted.set(AzureWebJobsStorage=point(budgeted.storage, frozen.port))
    raw = (SAMPLES / "key-new-version.eventgrid.json").read_text()
    [outcome] = bounded(lambda: deliver_event_grid(function_app.on_key_event, raw))
    assert isinstance(outcome, BudgetExhausted)  # the delivery fails: Event Grid redelivers
    assert frozen.accepted  # it did reach the frozen endpoint


def test_http_start_answers_503_within_its_budget_and_queues_nothing(budgeted, frozen) -> None:
    budgeted.set(AzureWebJobsStorage=point(budgeted.storage, frozen.port, ("Queue",)))
    status, body, headers = bounded(
        lambda: call(function_app.start_rotation, "POST", "/api/rotations", {"keyId": s.key_id("acr-cmk")})
    )
    assert status == 503 and body["error"]["code"] == "StorageTimeout"
    assert headers["Retry-After"].isdigit()
    assert "127.0.0.1" not in json.dumps(body) and "Pool" not in json.dumps(body)
    # Nothing claims the request was queued: no run record, no request-queued record.
    runs = TableClient.from_connection_string(budgeted.storage, "RotationRuns")
    assert list(runs.list_entities()) == []
    audit = TableClient.from_connection_string(budgeted.storage, "RotationAudit")
    kinds = {e["Kind"] for e in audit.list_entities() if e["PartitionKey"] != "heads"}
    assert "request-queued" not in kinds


def test_http_plan_answers_503_within_its_budget_when_all_storage_freezes(budgeted, frozen) -> None:
    budgeted.set(AzureWebJobsStorage=point(budgeted.storage, frozen.port))
    status, body, headers = bounded(
        lambda: call(
            function_app.plan_rotation, "POST", "/api/rotations/plan", {"keyId": s.key_id("acr-cmk")}
        )
    )
    assert status == 503 and headers["Retry-After"].isdigit()
    assert body["error"]["code"] in {"StorageTimeout", "AuditUnavailable"}


def test_worker_attempt_ends_within_its_budget_when_storage_freezes(budgeted, frozen) -> None:
    request = new_request(parse_key_id(s.key_id("acr-cmk")), "http", "pytest")
    budgeted.set(AzureWebJobsStorage=point(budgeted.storage, frozen.port, ("Table", "Blob")))
    message = func.QueueMessage(id="m1", body=encode(request).encode())
    outcome = bounded(lambda: function_app.run_rotation(message))
    assert isinstance(outcome, BudgetExhausted)  # the host retries the message
    assert budgeted.writes("PATCH") == []


def test_refused_storage_answers_503_without_internals_and_logs_the_whole_rejection(
    budgeted, caplog: pytest.LogCaptureFixture
) -> None:
    budgeted.set(AzureWebJobsStorage=point(budgeted.storage, dead_port()))
    with caplog.at_level(logging.ERROR, logger="rotation.api"):
        status, body, headers = bounded(
            lambda: call(
                function_app.start_rotation, "POST", "/api/rotations", {"keyId": s.key_id("acr-cmk")}
            )
        )
    assert status == 503 and headers["Retry-After"].isdigit()
    assert body["error"]["code"] in {"StorageUnavailable", "StorageTimeout"}
    assert "127.0.0.1" not in json.dumps(body) and "HTTPConnectionPool" not in json.dumps(body)
    [line] = [r.getMessage() for r in caplog.records if "could not audit" in r.getMessage()]
    record = json.loads(line.split("the record: ", 1)[1])
    assert record["kind"] == "input-rejected" and record["reason"] == body["error"]["code"]
    assert record["hash"] and record["detail"] == {"route": "start", "status": 503}


def test_worker_budget_default_fits_the_host_function_timeout() -> None:
    host = json.loads((Path(function_app.__file__).parent / "host.json").read_text())
    hours, minutes, seconds = (int(p) for p in host["functionTimeout"].split(":"))
    from rotation.config import Settings

    timeout = hours * 3600 + minutes * 60 + seconds
    assert Settings.worker_budget_seconds < timeout
    assert Settings.door_budget_seconds < 30  # Event Grid's answer window
    assert worker  # the worker door reads worker_budget_seconds
