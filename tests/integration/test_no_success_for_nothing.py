"""Issue 23 item 1: a request that cannot do anything is refused at the door (HTTP 404/400, CLI
exit 2), a run that no retry can change fails once and goes to poison, and a replay whose run
failed exits 4. Real function entry points, Azurite and the emulator."""

from __future__ import annotations

import base64
import json

from azure.storage.queue import QueueClient

import function_app
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.storage.queue import encode, enqueue
from tests import scenarios as s
from tests.integration.cli_support import KEY, OLD, load_estate, run
from tests.integration.test_functions import call, queued_messages

MISSING_KEY = s.key_id("nope")
STRANGER = s.registry_id("doesnotexist")


def estate(stack) -> None:
    load_estate(stack, [s.registry("reg1", s.key_id("acr-cmk", OLD))])


def poison_messages(stack) -> list:
    raw = QueueClient.from_connection_string(stack.storage, "rotation-requests-poison")
    return list(raw.peek_messages(max_messages=32))


def key_reads(stack) -> list[dict]:
    calls = stack.admin.calls()["calls"]  # the SDK's first, unauthenticated try is a 401 challenge
    return [c for c in calls if c["host"].endswith("vault.azure.net") and c["status"] != 401]


class TestDoor:
    def test_start_with_a_missing_key_is_404_after_one_key_vault_read_and_queues_nothing(self, stack) -> None:
        estate(stack)
        status, body, _ = call(function_app.start_rotation, "POST", "/api/rotations", {"keyId": MISSING_KEY})
        assert status == 404 and body["error"]["code"] == "KeyNotFound"
        assert "nope" in body["error"]["message"]
        assert queued_messages(stack) == []
        assert len(key_reads(stack)) == 1

    def test_start_with_an_existing_key_is_still_202(self, stack) -> None:
        estate(stack)
        status, body, _ = call(function_app.start_rotation, "POST", "/api/rotations", {"keyId": KEY})
        assert status == 202 and [m["requestId"] for m in queued_messages(stack)] == [body["runId"]]

    def test_start_and_plan_naming_a_target_that_is_not_a_consumer_are_400(self, stack) -> None:
        estate(stack)
        for function, path in (
            (function_app.start_rotation, "/api/rotations"),
            (function_app.plan_rotation, "/api/rotations/plan"),
        ):
            request = {"keyId": KEY, "targets": [s.registry_id("reg1"), STRANGER]}
            status, body, _ = call(function, "POST", path, request)
            assert status == 400, path
            assert body["error"]["code"] == "NotAConsumer" and STRANGER in body["error"]["message"]
            assert body["error"]["notConsumers"] == [STRANGER]
        assert queued_messages(stack) == [] and stack.writes() == []

    def test_rotate_naming_a_target_that_is_not_a_consumer_is_a_usage_error(self, stack) -> None:
        estate(stack)
        for output in ("table", "json"):
            result = run("rotate", KEY, "--yes", "--target", STRANGER, "-o", output)
            assert result.exit_code == 2, result.output
            assert "not a consumer" in result.stderr and STRANGER in result.stderr
            assert "succeeded" not in result.stdout
        assert run("plan", KEY, "--target", STRANGER).exit_code == 2
        assert stack.writes() == []


class TestWorker:
    def test_a_run_no_retry_can_change_fails_once_and_goes_to_poison_with_its_cause(self, stack) -> None:
        estate(stack)
        service = stack.service()
        request = new_request(parse_key_id(MISSING_KEY), "http", "tester")  # past the door: queued
        enqueue(service.requests_queue, request)
        dispatcher = stack.dispatcher(function_app.run_rotation)
        stats = dispatcher.run_until_idle(timeout=60)
        dispatcher.close()
        assert len(stats.invocations) == 1 and stats.failures == []  # one attempt, not five
        [poisoned] = poison_messages(stack)
        assert json.loads(base64.b64decode(poisoned.content))["requestId"] == request.request_id
        run_record = service.runs.get(request.request_id)
        assert run_record["status"] == "failed" and "404" in run_record["error"]
        records, _ = service.audit.query(run=request.request_id, top=50)
        [record] = [r for r in records if r["kind"] == "request-poisoned"]
        assert record["errorCode"] and "not retried" in record["message"]
        listed = run("deadletters", "list", "-o", "json")
        [item] = json.loads(listed.stdout)
        assert item["source"] == "poison" and "nope" in item["cause"] and item["attempts"] == 1
        assert run("audit", "verify").exit_code == 0

    def test_key_vault_refusing_the_identity_fails_once_too(self, stack) -> None:
        estate(stack)
        stack.admin.add_fault(host="contoso-cmk.vault.azure.net", status=403, count=1000)
        service = stack.service()
        request = new_request(parse_key_id(KEY), "event", "eventgrid:e1", event_id="e1")
        enqueue(service.requests_queue, request)
        dispatcher = stack.dispatcher(function_app.run_rotation)
        stats = dispatcher.run_until_idle(timeout=60)
        dispatcher.close()
        assert len(stats.invocations) == 1 and stats.failures == []
        assert len(poison_messages(stack)) == 1
        assert "403" in service.runs.get(request.request_id)["error"]

    def test_a_failure_a_retry_can_change_is_still_retried(self, stack) -> None:
        estate(stack)
        stack.admin.add_fault(host="contoso-cmk.vault.azure.net", status=503, count=1000)
        service = stack.service()
        enqueue(service.requests_queue, new_request(parse_key_id(KEY), "http", "tester"))
        dispatcher = stack.dispatcher(function_app.run_rotation, max_dequeue_count=2)
        stats = dispatcher.run_until_idle(timeout=60)
        dispatcher.close()
        assert len(stats.invocations) == 2 and len(stats.poisoned) == 1


def test_replay_where_the_replayed_run_failed_exits_4(stack) -> None:
    estate(stack)
    service = stack.service()
    request = new_request(parse_key_id(MISSING_KEY), "http", "tester")
    service.poison_queue.send_message(encode(request))  # a poison request for a key deleted since
    for output in ("table", "json"):
        result = run("replay", "--yes", "--force", "-o", output)
        assert result.exit_code == 4, result.output
