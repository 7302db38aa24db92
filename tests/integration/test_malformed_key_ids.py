"""Issue 21 item 6: key ids urlsplit cannot read (look-alikes of '@', '/' and ':' under NFKC,
a port out of range or not a number, an unclosed IPv6 bracket) are bad input at every door:
400 `InvalidKeyId` on the five HTTP routes that take a key, exit 2 from the CLI, and a queue
message carrying one is audited `input-rejected` and poisoned at once (never retried)."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient
from hypothesis import HealthCheck, given, settings

import function_app
from devstack.functions_host import http_request
from tests.integration.cli_support import run
from tests.unit.test_keyids import MALFORMED_KEY_IDS, URL_SHAPED


def _answer(function: Any, method: str, path: str, body: Any = None, query: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    response = function(http_request(method, path, body=data, query=query))
    return response.status_code, json.loads(response.get_body() or b"null")


ROUTES = {
    "plan": lambda key: _answer(function_app.plan_rotation, "POST", "/api/rotations/plan", {"keyId": key}),
    "start": lambda key: _answer(function_app.start_rotation, "POST", "/api/rotations", {"keyId": key}),
    "replay": lambda key: _answer(function_app.replay_failed, "POST", "/api/replay", {"key": key}),
    "audit": lambda key: _answer(function_app.list_audit, "GET", "/api/audit", query={"key": key}),
    "inventory": lambda key: _answer(
        function_app.list_inventory, "GET", "/api/inventory", query={"key": key}
    ),
}


def _rejections(stack) -> list[dict[str, Any]]:
    records, _ = stack.service().audit.query(top=100)
    return [r for r in records if r["kind"] == "input-rejected"]


@pytest.mark.parametrize("key", MALFORMED_KEY_IDS)
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_answers_400_and_audits(stack, route: str, key: str) -> None:
    status, body = ROUTES[route](key)
    assert status == 400, body
    assert body["error"]["code"] == "InvalidKeyId"
    assert [r["reason"] for r in _rejections(stack)] == ["InvalidKeyId"]


CLI = {
    "plan": lambda key: ("plan", key),
    "rotate": lambda key: ("rotate", key, "--dry-run"),
    "versions show": lambda key: ("versions", "show", key),
    "audit list": lambda key: ("audit", "list", "--key", key),
    "inventory": lambda key: ("inventory", "--key", key),
    "replay": lambda key: ("replay", "--key", key, "--dry-run"),
}


@pytest.mark.parametrize("key", MALFORMED_KEY_IDS)
@pytest.mark.parametrize("command", sorted(CLI))
@pytest.mark.parametrize("output", ["table", "json"])
def test_every_command_exits_2(stack, command: str, key: str, output: str) -> None:
    result = run("-o", output, *CLI[command](key))
    assert result.exit_code == 2, result.output
    assert "key id" in result.output


@pytest.mark.parametrize("key", MALFORMED_KEY_IDS)
def test_a_queued_request_with_one_is_poisoned_once(stack, key: str) -> None:
    stack.service()
    message = {
        "schema": 1,
        "requestId": "5b1c6f1e-2a43-4f2b-9f0e-0c1d2e3f4a5b",
        "source": "http",
        "keyId": key,
        "eventId": None,
        "eventType": None,
        "eventVersion": None,
        "actor": "pytest",
        "dryRun": False,
        "targets": None,
        "enqueuedAt": "2026-11-20T00:00:00Z",
        "leaseWaits": 0,
    }
    body = json.dumps(message).encode()
    assert function_app.run_rotation(func.QueueMessage(id="bad-key", body=body)) is None  # no retry
    poison = QueueClient.from_connection_string(stack.storage, "rotation-requests-poison")
    blobs = ContainerClient.from_connection_string(stack.storage, "rotation-poison")
    assert len(poison.peek_messages(max_messages=32)) + len(list(blobs.list_blobs())) == 1
    [record] = _rejections(stack)
    assert record["source"] == "queue" and "keyId" in record["message"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(key=URL_SHAPED)
def test_fuzzed_url_shaped_key_ids_are_answered_never_500(stack, key: str) -> None:
    for route in ("plan", "audit"):
        status, body = ROUTES[route](key)
        assert status in (200, 400, 403, 404, 502), (route, key, status, body)
        if status == 400:
            assert body["error"]["code"] == "InvalidKeyId"
