"""The function entry points, called with real azure.functions objects built by the library's
converters from raw JSON, the queue in Azurite, and the emulator behind the SDKs."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

import function_app
from devstack.functions_host import deliver_event_grid
from tests import scenarios as s
from tests.conftest import dead_port
from tests.support.http import call

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
SAMPLE_VERSION = "9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b"  # the version in key-new-version.eventgrid.json
OLD = s.vid("old")


def sample_scenario() -> dict[str, Any]:
    key = s.key(
        s.version("old", created="-200d"), {"version": SAMPLE_VERSION, "created": "-1h", "exp": "+365d"}
    )
    return s.scenario(
        {"acr-cmk": key},
        registries=[
            s.registry("reg1", s.key_id("acr-cmk", OLD)),
            s.registry("reg2", s.key_id("acr-cmk", OLD), sub=s.SUB_B),
        ],
        batch_accounts=[s.batch("batch1", s.key_id("acr-cmk", OLD))],
    )


def queued_messages(stack) -> list[dict[str, Any]]:
    raw = QueueClient.from_connection_string(stack.storage, "rotation-requests")
    return [json.loads(base64.b64decode(m.content)) for m in raw.peek_messages(max_messages=32)]


def audit_kinds(stack, **filters: Any) -> list[str]:
    records, _ = stack.service().audit.query(top=500, **filters)
    return [r["kind"] for r in records]


class TestEventGridToQueueToReconcile:
    def test_sample_event_is_queued_then_run_by_the_queue_function(self, stack) -> None:
        stack.load(sample_scenario())
        outcomes = deliver_event_grid(
            function_app.on_key_event, (SAMPLES / "key-new-version.eventgrid.json").read_text()
        )
        assert outcomes == [None]
        [message] = queued_messages(stack)  # base64 JSON, as the queue trigger reads it
        assert message["schema"] == 1 and message["source"] == "event"
        assert message["eventId"] == "6f1c2a3e-1b2c-4d5e-9f00-0a1b2c3d4e5f"
        assert message["eventType"] == "Microsoft.KeyVault.KeyNewVersionCreated"
        assert message["keyId"] == s.key_id("acr-cmk") and message["eventVersion"] == SAMPLE_VERSION
        assert stack.writes("PATCH") == []  # the Event Grid door only enqueues
        dispatcher = stack.dispatcher(function_app.run_rotation)
        stats = dispatcher.run_until_idle(timeout=60)
        dispatcher.close()
        assert stats.failures == [] and len(stats.invocations) == 1
        state = stack.admin.state()
        assert all(r["keyId"].endswith(SAMPLE_VERSION) for r in state["registries"])
        assert state["batchAccounts"][0]["keyId"].endswith(SAMPLE_VERSION)
        status, body, _ = call(
            function_app.get_rotation,
            "GET",
            f"/api/rotations/{message['requestId']}",
            route_params={"runId": message["requestId"]},
        )
        assert status == 200 and body["status"] == "succeeded"
        assert sorted(st["outcome"] for st in body["steps"]) == ["verified"] * 3
        kinds = audit_kinds(stack, run=message["requestId"])
        assert {"event-received", "request-queued", "run-started", "verified", "run-finished"} <= set(kinds)

    def test_cloudevents_delivery_arrives_as_cloud_event_and_is_queued(self, stack) -> None:
        scenario = sample_scenario()
        scenario["vaults"]["contoso-cmk"]["keys"]["batch-cmk"] = s.key(
            {"version": "1a2b3c4d5e6f47788990aabbccddeeff", "created": "-335d", "exp": "+28d"}
        )
        stack.load(scenario)
        body = (SAMPLES / "key-near-expiry.cloudevent.json").read_text()
        assert deliver_event_grid(function_app.on_key_event, body) == [None]
        [message] = queued_messages(stack)
        assert message["eventType"] == "Microsoft.KeyVault.KeyNearExpiry"
        assert message["keyId"] == s.key_id("batch-cmk")

    @pytest.mark.parametrize(
        ("mutate", "reason"),
        [
            (lambda e: e.update(eventType="Microsoft.KeyVault.SecretNewVersionCreated"), "unsupported-type"),
            (
                lambda e: e["data"].update(
                    Id=e["data"]["Id"].replace("contoso-cmk", "evil-cmk"), VaultName="evil-cmk"
                ),
                "vault-not-allowed",
            ),
            (lambda e: e["data"].update(Id="not a url"), "malformed"),
        ],
    )
    def test_bad_events_are_audited_and_acknowledged(self, stack, mutate: Any, reason: str) -> None:
        stack.load(sample_scenario())
        raw = json.loads((SAMPLES / "key-new-version.eventgrid.json").read_text())
        mutate(raw[0])
        assert deliver_event_grid(function_app.on_key_event, raw) == [None]  # acknowledged, no retry storm
        assert queued_messages(stack) == []
        records, _ = stack.service().audit.query(top=50)
        [rejected] = [r for r in records if r["kind"] == "input-rejected"]
        assert rejected["reason"] == reason and rejected["eventId"] == raw[0]["id"]

    def test_enqueue_failure_raises_so_event_grid_redelivers(self, stack) -> None:
        stack.load(sample_scenario())
        stack.service()  # storage exists
        # The queue endpoint now points where nothing listens.
        endpoint = re.search(r"QueueEndpoint=http://127.0.0.1:(\d+)", stack.storage)
        assert endpoint, stack.storage
        queue_port = endpoint.group(1)
        stack.set(
            AzureWebJobsStorage=stack.storage.replace(f"127.0.0.1:{queue_port}", f"127.0.0.1:{dead_port()}")
        )
        outcomes = deliver_event_grid(
            function_app.on_key_event, (SAMPLES / "key-new-version.eventgrid.json").read_text()
        )
        assert isinstance(outcomes[0], Exception)


class TestQueueFunction:
    def test_failed_run_is_retried_then_poisoned(self, stack) -> None:
        stack.load(sample_scenario())
        stack.admin.add_fault(method="PATCH", pathRegex="registries/reg1$", status=403)
        deliver_event_grid(
            function_app.on_key_event, (SAMPLES / "key-new-version.eventgrid.json").read_text()
        )
        dispatcher = stack.dispatcher(function_app.run_rotation, max_dequeue_count=3)
        stats = dispatcher.run_until_idle(timeout=90)
        dispatcher.close()
        assert [i.dequeue_count for i in stats.invocations] == [1, 2, 3]
        assert len(stats.poisoned) == 1
        poison = QueueClient.from_connection_string(stack.storage, "rotation-requests-poison")
        [message] = poison.peek_messages()
        assert json.loads(base64.b64decode(message.content))["keyId"] == s.key_id("acr-cmk")
        # The other targets converged on the first attempt and were not written again.
        assert sorted(c["path"].rsplit("/", 1)[1] for c in stack.writes("PATCH")) == [
            "batch1",
            "reg1",
            "reg1",
            "reg1",
            "reg2",
        ]

    def test_message_that_is_not_base64_ends_in_the_poison_queue(self, stack) -> None:
        stack.service()
        raw = QueueClient.from_connection_string(stack.storage, "rotation-requests")
        raw.send_message("this is {not base64!")
        dispatcher = stack.dispatcher(function_app.run_rotation, max_dequeue_count=2)
        stats = dispatcher.run_until_idle(timeout=30)
        dispatcher.close()
        assert len(stats.poisoned) == 1
        poison = QueueClient.from_connection_string(stack.storage, "rotation-requests-poison")
        assert [m.content for m in poison.peek_messages()] == ["this is {not base64!"]

    def test_message_that_is_not_a_request_is_quarantined_at_once(self, stack) -> None:
        stack.service()
        raw = QueueClient.from_connection_string(stack.storage, "rotation-requests")
        raw.send_message(base64.b64encode(b'{"schema": 99}').decode())
        dispatcher = stack.dispatcher(function_app.run_rotation)
        stats = dispatcher.run_until_idle(timeout=30)
        dispatcher.close()
        assert stats.failures == [] and len(stats.invocations) == 1
        poison = QueueClient.from_connection_string(stack.storage, "rotation-requests-poison")
        [kept] = poison.peek_messages()
        assert json.loads(base64.b64decode(kept.content)) == {"schema": 99}
        assert "input-rejected" in audit_kinds(stack)


class TestHttp:
    def test_plan_is_read_only(self, stack) -> None:
        stack.load(sample_scenario())
        status, body, _ = call(
            function_app.plan_rotation, "POST", "/api/rotations/plan", {"keyId": s.key_id("acr-cmk")}
        )
        assert status == 200 and body["desiredVersion"] == SAMPLE_VERSION
        assert body["summary"] == {"update": 3}
        assert stack.writes("PATCH") == []

    def test_start_queues_a_run_that_the_queue_function_completes(self, stack) -> None:
        stack.load(sample_scenario())
        status, body, headers = call(
            function_app.start_rotation,
            "POST",
            "/api/rotations",
            {"keyId": s.key_id("acr-cmk", SAMPLE_VERSION), "targets": [s.registry_id("reg1")]},
        )
        assert status == 202 and body["statusUrl"].endswith(f"/api/rotations/{body['runId']}")
        assert headers["Location"] == body["statusUrl"]
        [message] = queued_messages(stack)
        assert message["requestId"] == body["runId"] and message["source"] == "http"
        assert message["actor"] == "function-key" and message["targets"] == [s.registry_id("reg1")]
        _, queued, _ = call(
            function_app.get_rotation,
            "GET",
            f"/api/rotations/{body['runId']}",
            route_params={"runId": body["runId"]},
        )
        assert queued["status"] == "queued"
        dispatcher = stack.dispatcher(function_app.run_rotation)
        dispatcher.run_until_idle(timeout=60)
        dispatcher.close()
        _, done, _ = call(
            function_app.get_rotation,
            "GET",
            f"/api/rotations/{body['runId']}",
            route_params={"runId": body["runId"]},
        )
        assert done["status"] == "succeeded" and [st["target"] for st in done["steps"]] == [
            s.registry_id("reg1")
        ]

    def test_versioned_key_must_be_the_desired_version(self, stack) -> None:
        stack.load(sample_scenario())
        status, body, _ = call(
            function_app.start_rotation, "POST", "/api/rotations", {"keyId": s.key_id("acr-cmk", OLD)}
        )
        assert status == 409 and body["error"]["desiredVersion"] == SAMPLE_VERSION
        assert queued_messages(stack) == []

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            (b"{not json", 400, "InvalidJson"),
            (b"[]", 400, "InvalidBody"),
            ({"keyId": s.key_id("acr-cmk"), "force": True}, 400, "UnknownField"),
            ({}, 400, "MissingField"),
            ({"keyId": "https://contoso-cmk.vault.azure.net/secrets/x"}, 400, "InvalidKeyId"),
            ({"keyId": "https://other-vault.vault.azure.net/keys/x"}, 403, "VaultNotAllowed"),
            ({"keyId": s.key_id("acr-cmk"), "targets": ["/subscriptions/x"]}, 400, "InvalidTargets"),
            ({"keyId": s.key_id("acr-cmk"), "dryRun": "yes"}, 400, "InvalidBody"),
            (b"{" + b" " * (64 * 1024) + b"}", 413, "PayloadTooLarge"),
        ],
    )
    def test_bad_requests_get_clear_errors_and_are_audited(
        self, stack, body: Any, status: int, code: str
    ) -> None:
        stack.load(sample_scenario())
        got, answer, _ = call(function_app.start_rotation, "POST", "/api/rotations", body)
        assert (got, answer["error"]["code"]) == (status, code)
        assert answer["error"]["message"]
        assert queued_messages(stack) == []
        assert "input-rejected" in audit_kinds(stack)

    def test_plan_answers_502_when_key_vault_is_unreachable(self, stack) -> None:
        stack.load(sample_scenario())
        stack.admin.add_fault(host="contoso-cmk.vault.azure.net", status=503)
        status, body, _ = call(
            function_app.plan_rotation, "POST", "/api/rotations/plan", {"keyId": s.key_id("acr-cmk")}
        )
        assert status == 502 and body["error"]["code"] == "Unreachable"

    def test_unknown_run_and_bad_run_id(self, stack) -> None:
        stack.service()
        missing = "00000000-0000-4000-8000-000000000000"
        assert (
            call(
                function_app.get_rotation, "GET", f"/api/rotations/{missing}", route_params={"runId": missing}
            )[0]
            == 404
        )
        assert (
            call(function_app.get_rotation, "GET", "/api/rotations/x'", route_params={"runId": "x'"})[0]
            == 400
        )

    def test_audit_route_filters_and_pages(self, stack) -> None:
        stack.load(sample_scenario())
        deliver_event_grid(
            function_app.on_key_event, (SAMPLES / "key-new-version.eventgrid.json").read_text()
        )
        dispatcher = stack.dispatcher(function_app.run_rotation)
        dispatcher.run_until_idle(timeout=60)
        dispatcher.close()
        status, body, _ = call(
            function_app.list_audit, "GET", "/api/audit", query={"key": s.key_id("acr-cmk"), "top": "5"}
        )
        assert status == 200 and len(body["records"]) >= 5 and body["continuation"]
        times = [r["time"] for r in body["records"]]
        assert times == sorted(times, reverse=True)
        status, page2, _ = call(
            function_app.list_audit,
            "GET",
            "/api/audit",
            query={"key": s.key_id("acr-cmk"), "top": "5", "continuation": body["continuation"]},
        )
        assert status == 200 and page2["records"]
        assert not {r["hash"] for r in body["records"]} & {r["hash"] for r in page2["records"]}
        status, by_target, _ = call(
            function_app.list_audit, "GET", "/api/audit", query={"target": s.registry_id("reg1")}
        )
        assert status == 200 and by_target["records"]
        assert all(r["target"] == s.registry_id("reg1") for r in by_target["records"])
        assert call(function_app.list_audit, "GET", "/api/audit", query={"top": "0"})[0] == 400
        assert call(function_app.list_audit, "GET", "/api/audit", query={"since": "yesterday"})[0] == 400

    def test_actor_and_roles_when_app_service_authentication_is_on(self, stack) -> None:
        stack.load(sample_scenario())
        stack.set(WEBSITE_AUTH_ENABLED="True")

        def principal(*roles: str) -> str:
            claims = [{"typ": "roles", "val": r} for r in roles]
            return base64.b64encode(
                json.dumps({"auth_typ": "aad", "claims": claims, "role_typ": "roles"}).encode()
            ).decode()

        headers = {
            "X-MS-CLIENT-PRINCIPAL-NAME": "oncall@contoso.com",
            "X-MS-CLIENT-PRINCIPAL": principal("Rotation.Plan"),
        }
        status, body, _ = call(
            function_app.start_rotation,
            "POST",
            "/api/rotations",
            {"keyId": s.key_id("acr-cmk")},
            headers=headers,
        )
        assert status == 403 and body["error"]["code"] == "MissingRole"
        headers["X-MS-CLIENT-PRINCIPAL"] = principal("Rotation.Execute")
        status, body, _ = call(
            function_app.start_rotation,
            "POST",
            "/api/rotations",
            {"keyId": s.key_id("acr-cmk")},
            headers=headers,
        )
        assert status == 202
        [message] = queued_messages(stack)
        assert message["actor"] == "oncall@contoso.com"
