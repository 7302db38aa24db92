"""Guards found by review: allow-lists at every door, nothing escaping a run unrecorded,
duplicate targets, container-group safety, lease ownership, audit integrity under load,
case-insensitive and bounded audit queries, HTTP error mapping."""

from __future__ import annotations

import base64
import json
from typing import Any

from azure.identity import DefaultAzureCredential
from azure.keyvault.keys import KeyClient
from azure.storage.queue import QueueClient

import function_app
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.storage import audit as audit_module
from rotation.storage.ledger import LeaseHeld, lease_owner
from rotation.storage.queue import encode, enqueue
from tests import scenarios as s
from tests.support.http import call
from tests.support.runs import records

OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("acr-cmk")


def acr(*extra: dict[str, Any]) -> dict[str, Any]:
    return s.key(s.version("old", created="-300d"), s.version("new", created="-1h"), *extra)


def run(stack, **fields: Any):
    request = new_request(parse_key_id(KEY), "cli", "pytest", **fields)
    return stack.service().reconciler.run(request), request


class TestAllowLists:
    def test_a_queued_request_for_a_vault_no_longer_allowed_is_never_acted_on(self, stack) -> None:
        stack.load(s.scenario({"acr-cmk": acr()}, registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))]))
        service = stack.service()
        stack.set(ROTATION_ALLOWED_VAULTS="fabrikam-cmk.vault.azure.net")  # narrowed after it was queued
        enqueue(service.requests_queue, new_request(parse_key_id(KEY), "http", "function-key"))
        stack.admin.clear_calls()
        dispatcher = stack.dispatcher(function_app.run_rotation)
        stats = dispatcher.run_until_idle(timeout=30)
        dispatcher.close()
        assert stats.failures == []
        assert stack.admin.calls()["total"] == 0  # neither Key Vault nor ARM was asked
        poison = QueueClient.from_connection_string(stack.storage, "rotation-requests-poison")
        [kept] = poison.peek_messages()
        assert json.loads(base64.b64decode(kept.content))["keyId"] == KEY
        rejected = [r for r in records(stack) if r["kind"] == "input-rejected"]
        assert "ROTATION_ALLOWED_VAULTS" in rejected[0]["message"]

    def test_targets_outside_the_configured_subscriptions_are_refused(self, stack) -> None:
        stack.load(s.scenario({"acr-cmk": acr()}, registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))]))
        foreign = s.registry_id("reg1", sub="00000000-0000-0000-0000-0000000000ff")
        status, body, _ = call(
            function_app.start_rotation, "POST", "/api/rotations", {"keyId": KEY, "targets": [foreign]}
        )
        assert (status, body["error"]["code"]) == (403, "TargetNotAllowed")
        result, _ = run(stack, targets=(foreign,))
        assert result.status == "failed" and result.error.code == "NotAllowed"
        assert stack.writes("PATCH") == []

    def test_case_variant_duplicate_targets_are_one_step_and_one_write(self, stack) -> None:
        stack.load(s.scenario({"acr-cmk": acr()}, registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))]))
        upper = s.registry_id("reg1").replace("rg-acr", "RG-ACR")
        result, _ = run(stack, targets=(s.registry_id("reg1"), upper))
        assert [st.outcome for st in result.steps] == ["verified"]
        assert len(stack.writes("PATCH")) == 1


class TestNothingEscapes:
    def test_a_key_vault_error_while_setting_expiry_is_recorded_and_finished(self, stack) -> None:
        stack.load(
            s.scenario(
                {
                    "acr-cmk": s.key(
                        s.version("old", created="-300d"), s.version("new", created="-1h", exp=None)
                    )
                },
                registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))],
            )
        )
        stack.admin.add_fault(method="PATCH", host="contoso-cmk.vault.azure.net", status=403)
        result, request = run(stack)
        assert result.status == "failed" and result.error.status == 403
        assert stack.service().runs.get(request.request_id)["status"] == "failed"
        kinds = [r["kind"] for r in records(stack, run=request.request_id)]
        assert {"run-started", "run-failed", "run-finished"} <= set(kinds)

    def test_an_unreadable_saved_spec_does_not_stop_planning(self, stack) -> None:
        stack.load(s.scenario({"acr-cmk": acr()}, registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))]))
        blobs = stack.service().clients.blobs()
        blobs.get_blob_client("rotation-redeploy", "subscriptions/x/garbage.json").upload_blob(b"{not json")
        result, _ = run(stack)
        assert [st.outcome for st in result.steps] == ["verified"]


class TestContainerGroups:
    def test_a_log_analytics_key_hidden_by_get_blocks_the_redeploy(self, stack) -> None:
        stack.set(ROTATION_CONTAINER_GROUP_POLICY="redeploy")
        group = s.group("grp1", "acr-cmk", OLD)
        group["diagnostics"] = {"logAnalytics": {"workspaceId": "4f1b8c2e", "workspaceKey": "c2VjcmV0"}}
        stack.load(s.scenario({"acr-cmk": acr()}, groups=[group]))
        result, _ = run(stack)
        [step] = result.steps
        assert (step.action, step.reason) == ("blocked", "spec-not-reconstructible")
        assert [c for c in stack.admin.calls()["calls"] if c["method"] == "DELETE"] == []

    def test_a_create_refused_on_the_new_version_rolls_back_to_the_old_one(self, stack) -> None:
        stack.set(ROTATION_CONTAINER_GROUP_POLICY="redeploy")
        stack.load(s.scenario({"acr-cmk": acr()}, groups=[s.group("grp1", "acr-cmk", OLD)]))
        stack.admin.add_fault(method="PUT", pathRegex="containerGroups/grp1$", status=400, count=1)
        result, _ = run(stack)
        [step] = result.steps
        assert step.outcome == "failed" and "re-created on its previous version" in step.error
        [group] = stack.admin.state()["containerGroups"]
        assert group["keyVersion"] == OLD  # running again, on its old, still valid version
        assert (
            list(stack.service().clients.blobs().get_container_client("rotation-redeploy").list_blobs()) == []
        )

    def test_a_failed_provisioning_state_is_not_verified(self, stack) -> None:
        stack.set(ROTATION_CONTAINER_GROUP_POLICY="redeploy")
        stack.load(s.scenario({"acr-cmk": acr()}, groups=[s.group("grp1", "acr-cmk", OLD)]))
        stack.admin.add_fault(method="PUT", pathRegex="containerGroups/grp1$", lroResult="Failed")
        result, _ = run(stack)
        [step] = result.steps
        assert step.outcome == "failed"
        assert (
            len(list(stack.service().clients.blobs().get_container_client("rotation-redeploy").list_blobs()))
            == 1
        )


def test_lease_owners_are_unique_per_attempt(stack) -> None:
    stack.load(s.scenario({"acr-cmk": acr()}))
    service = stack.service()
    request = new_request(parse_key_id(KEY), "http", "function-key")
    held = service.ledger.acquire(request.key, owner=lease_owner(request.request_id))
    # Another live copy of the same request does not share the lease.
    assert isinstance(service.ledger.acquire(request.key, owner=lease_owner(request.request_id)), LeaseHeld)
    held.release()


def test_large_runs_verify_and_keep_no_key_material(stack) -> None:
    registries = [s.registry(f"reg{i:02d}", s.key_id("acr-cmk", OLD)) for i in range(40)]
    stack.load(s.scenario({"acr-cmk": acr()}, registries=registries))
    result, request = run(stack, targets=tuple(r["id"] for r in registries))
    assert result.status == "succeeded"
    checked, findings = audit_module.verify(stack.service().audit, run_ids=[request.request_id])
    assert (checked, findings) == (1, [])
    public = KeyClient("https://contoso-cmk.vault.azure.net", DefaultAzureCredential()).get_key("acr-cmk")
    # JsonWebKey sets its fields with setattr: read from its __dict__
    modulus = base64.urlsafe_b64encode(vars(public.key)["n"]).decode().rstrip("=")
    text = json.dumps(records(stack), default=str)
    assert modulus[:40] not in text and '"n":' not in text and "key_ops" not in text


def test_audit_queries_ignore_case_and_are_bounded(stack) -> None:
    stack.load(s.scenario({"acr-cmk": acr()}, registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))]))
    run(stack)
    assert records(stack, key=KEY.upper().replace("HTTPS://", "https://"))
    assert records(stack, target=s.registry_id("reg1").upper())
    status, body, _ = call(
        function_app.list_audit, "GET", "/api/audit", query={"since": "2000-01-01T00:00:00Z"}
    )
    assert (status, body["error"]["code"]) == (400, "InvalidQuery")


def test_http_maps_a_missing_key_to_404_and_replay_dry_runs_to_202(stack) -> None:
    stack.load(s.scenario({"acr-cmk": acr()}))
    status, body, _ = call(
        function_app.plan_rotation, "POST", "/api/rotations/plan", {"keyId": s.key_id("no-such-key")}
    )
    assert (status, body["error"]["code"]) == (404, "KeyNotFound")
    status, body, _ = call(function_app.replay_failed, "POST", "/api/replay", {"dryRun": True})
    assert status == 202 and body["dryRun"] is True and body["runIds"] == []
    status, body, _ = call(function_app.replay_failed, "POST", "/api/replay", {"force": True})
    assert (status, body["error"]["code"]) == (400, "UnknownField")


def test_a_rejection_is_answered_even_when_the_audit_store_is_down(stack) -> None:
    stack.load(s.scenario({"acr-cmk": acr()}))
    stack.service().clients.tables().delete_table("RotationAudit")
    status, body, _ = call(function_app.start_rotation, "POST", "/api/rotations", {"nope": 1})
    assert (status, body["error"]["code"]) == (400, "UnknownField")


def test_near_expiry_uses_the_key_policy_notify_window(stack) -> None:
    """Key Vault notified 60 days ahead (the key's policy); that is not a stale event."""
    policy = {
        "lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P60D"}, "action": {"type": "Notify"}}],
        "attributes": {},
    }
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("new", created="-300d", exp="+45d"), policy=policy)},
            registries=[s.registry("reg1", s.key_id("acr-cmk", NEW))],
        )
    )
    result, _ = run(stack, event_type="Microsoft.KeyVault.KeyNearExpiry", event_version=NEW)
    assert result.created_version is not None


def test_move_poison_finishes_a_move_interrupted_before_the_delete(stack) -> None:
    stack.load(s.scenario({"acr-cmk": acr()}))
    service = stack.service()
    raw = QueueClient.from_connection_string(stack.storage, "rotation-requests-poison")
    raw.send_message(base64.b64encode(encode(new_request(parse_key_id(KEY), "http", "x")).encode()).decode())
    [message] = raw.receive_messages(visibility_timeout=1)
    container = service.clients.blobs().get_container_client("rotation-poison")
    name = f"{message.inserted_on:%Y/%m/%d}/{message.id}.json"
    container.upload_blob(name, b'{"content": "written before the crash"}')  # the blob exists already
    raw.update_message(message.id, message.pop_receipt, visibility_timeout=0)
    from rotation.doors.replay import move_poison

    assert move_poison(service) == 1
    assert raw.get_queue_properties().approximate_message_count == 0
    assert [b.name for b in container.list_blobs()] == [name]
    assert json.loads(container.download_blob(name).readall())["content"] == "written before the crash"
