"""Replay of dead-lettered events and poison requests against Azurite and the emulator."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

import function_app
from devstack.functions_host import deliver_event_grid, http_request, timer_request
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.storage.queue import encode
from tests import scenarios as s
from tests.support.commands import cli

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
OLD, MID, NEW = s.vid("old"), s.vid("mid"), s.vid("new")
KEY = s.key_id("acr-cmk")
FOLDER = "CMK-ROTATION"


def estate(stack) -> None:
    stack.load(
        s.scenario(
            {
                "acr-cmk": s.key(
                    s.version("old", created="-300d"),
                    s.version("mid", created="-60d"),
                    s.version("new", created="-1d"),
                ),
                "batch-cmk": s.key(
                    {"version": "1a2b3c4d5e6f47788990aabbccddeeff", "created": "-340d", "exp": "+20d"}
                ),
            },
            registries=[
                s.registry("reg1", s.key_id("acr-cmk", OLD)),
                s.registry("reg2", s.key_id("acr-cmk", OLD)),
                s.registry("data", s.key_id("batch-cmk", "1a2b3c4d5e6f47788990aabbccddeeff")),
            ],
        )
    )


def dead_letter(
    event: dict[str, Any],
    *,
    reason: str = "MaxDeliveryAttemptsExceeded",
    cloud: bool = False,
    published: str = "2026-11-20T21:40:11.2000000Z",
) -> dict[str, Any]:
    fields = {
        "deadLetterReason": reason,
        "deliveryAttempts": 10,
        "lastDeliveryOutcome": "Aborted",
        "lastHttpStatusCode": 500,
        "publishTime": published,
        "lastDeliveryAttemptTime": published,
    }
    if cloud:
        fields = {k.lower(): v for k, v in fields.items()}
    return {**event, **fields}


def upload(stack, path: str, content: Any) -> None:
    blobs = BlobServiceClient.from_connection_string(stack.storage)
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    blobs.get_blob_client("eventgrid-deadletters", f"{FOLDER}/{path}").upload_blob(data, overwrite=True)


def seed_dead_letters(stack) -> None:
    old_event = s.event_grid_event("KeyNewVersionCreated", "acr-cmk", MID, event_id="dl-old")
    secret = {
        **s.event_grid_event("KeyNewVersionCreated", "acr-cmk", MID, event_id="dl-secret"),
        "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
    }
    upload(
        stack,
        "2026/11/20/21/0b7c1e9a-1111-4c1e-9f00-aaaaaaaaaaaa.json",
        [dead_letter(old_event), dead_letter(secret, reason="UndeliverableDueToHttpBadRequest")],
    )
    cloud = json.loads((SAMPLES / "key-near-expiry.cloudevent.json").read_text())
    upload(
        stack,
        "2026/11/21/3/1c8d2f0b-2222-4d2f-8a11-bbbbbbbbbbbb.json",
        [dead_letter(cloud, cloud=True, published="2026-11-21T03:10:00.000Z")],
    )
    upload(stack, "2026/11/22/9/2d9e3a1c-3333-4e3a-9b22-cccccccccccc.json", b"{not json at all")


def poison_a_request(stack) -> str:
    """A real request that fails every attempt (the registry refuses writes) and lands in poison."""
    stack.admin.add_fault(method="PATCH", pathRegex="registries/reg1$", status=403)
    deliver_event_grid(
        function_app.on_key_event,
        [s.event_grid_event("KeyNewVersionCreated", "acr-cmk", NEW, event_id="poisoned-1")],
    )
    dispatcher = stack.dispatcher(function_app.run_rotation, max_dequeue_count=2)
    stats = dispatcher.run_until_idle(timeout=60)
    dispatcher.close()
    assert len(stats.poisoned) == 1
    return "poisoned-1"


def test_list_reads_both_schemas_nested_paths_corrupt_blobs_and_poison(stack) -> None:
    estate(stack)
    stack.service()
    seed_dead_letters(stack)
    poison_a_request(stack)
    code, items = cli("deadletters", "list")
    assert code == 0
    by_id = {item["eventId"] or item["id"]: item for item in items}
    old = by_id["dl-old"]
    assert (
        old["source"],
        old["keyId"],
        old["version"],
        old["reason"],
        old["attempts"],
        old["lastOutcome"],
    ) == ("deadletter", KEY, MID, "MaxDeliveryAttemptsExceeded", 10, "Aborted")
    assert by_id["dl-secret"]["error"].startswith("unsupported-type")
    near = by_id["0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a"]
    assert near["eventType"] == "Microsoft.KeyVault.KeyNearExpiry" and near["attempts"] == 10
    [corrupt] = [i for i in items if i["error"] and "malformed blob" in i["error"]]
    assert corrupt["location"].endswith("2d9e3a1c-3333-4e3a-9b22-cccccccccccc.json")
    poisoned = by_id["poisoned-1"]
    assert poisoned["source"] == "poison" and poisoned["location"].startswith("rotation-poison/")
    assert "reg1" in poisoned["cause"] and "AuthorizationFailed" in poisoned["cause"]
    # Listing moved the poison message into a blob: nothing left in the queue to expire.
    assert (
        QueueClient.from_connection_string(stack.storage, "rotation-requests-poison")
        .get_queue_properties()
        .approximate_message_count
        == 0
    )
    assert [i["time"] for i in items] == sorted(i["time"] for i in items)  # oldest first


def test_dry_run_writes_nothing(stack) -> None:
    estate(stack)
    stack.service()
    seed_dead_letters(stack)
    poison_a_request(stack)
    stack.admin.clear_calls()
    blobs_before = sorted(
        b.name
        for b in BlobServiceClient.from_connection_string(stack.storage)
        .get_container_client("eventgrid-deadletters")
        .list_blobs()
    )
    ledger_before = len(list(stack.service().ledger.table.list_entities()))
    code, outcomes = cli("replay", "--dry-run")
    assert code == 0 and {o["action"] for o in outcomes} == {"would-replay", "skipped-malformed"}
    assert stack.admin.calls()["total"] == 0  # not a single Key Vault or ARM call
    assert (
        QueueClient.from_connection_string(stack.storage, "rotation-requests-poison")
        .get_queue_properties()
        .approximate_message_count
        == 1
    )  # peeked, not moved
    assert (
        sorted(
            b.name
            for b in BlobServiceClient.from_connection_string(stack.storage)
            .get_container_client("eventgrid-deadletters")
            .list_blobs()
        )
        == blobs_before
    )
    assert len(list(stack.service().ledger.table.list_entities())) == ledger_before


def test_replay_after_fixing_the_cause_converges_and_a_second_replay_is_a_no_op(stack) -> None:
    estate(stack)
    stack.service()
    poison_a_request(stack)
    stack.admin.clear_faults()  # the registry's access is restored
    code, outcomes = cli("replay", "--yes")
    [outcome] = outcomes
    assert code == 0 and (outcome["action"], outcome["status"]) == ("replayed", "succeeded")
    registries = {r["id"].rsplit("/", 1)[1]: r["keyId"] for r in stack.admin.state()["registries"]}
    assert registries["reg1"].endswith(NEW)
    marker = stack.service().ledger.replay_marker(outcome["item"])
    assert marker["Outcome"] == "succeeded" and marker["Operator"].startswith("cli:")
    stack.admin.clear_calls()
    code, again = cli("replay", "--yes")
    assert code == 0 and [o["action"] for o in again] == ["skipped-already-replayed"]
    assert stack.writes("PATCH") == []
    code, forced = cli("replay", "--yes", "--force")
    assert [o["action"] for o in forced] == ["replayed"]
    records, _ = stack.service().audit.query(top=500)
    replays = [r for r in records if r["kind"] in ("replay-started", "replayed", "replay-skipped")]
    assert replays and all(r["actor"].startswith("cli:") for r in replays)


def test_old_event_replayed_moves_consumers_forward_never_back(stack) -> None:
    estate(stack)
    stack.service()
    seed_dead_letters(stack)
    code, outcomes = cli("replay", "--yes", "--event-id", "dl-old")
    assert code == 0 and [(o["eventId"], o["action"]) for o in outcomes] == [("dl-old", "replayed")]
    keys = {r["id"].rsplit("/", 1)[1]: r["keyId"] for r in stack.admin.state()["registries"]}
    assert keys["reg1"].endswith(NEW) and keys["reg2"].endswith(NEW)  # the newest, not the event's MID


def test_filters_select_the_right_items(stack) -> None:
    estate(stack)
    stack.service()
    seed_dead_letters(stack)
    _, by_key = cli("deadletters", "list", "--key", s.key_id("batch-cmk"))
    assert [i["eventId"] for i in by_key] == ["0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a"]
    _, by_time = cli(
        "deadletters", "list", "--since", "2026-11-21T00:00:00Z", "--until", "2026-11-21T23:00:00Z"
    )
    assert [i["eventId"] for i in by_time] == ["0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a"]
    _, by_reason = cli("deadletters", "list", "--reason", "BadRequest")
    assert [i["eventId"] for i in by_reason] == ["dl-secret"]
    code, outcomes = cli("replay", "--dry-run", "--event-id", "0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a")
    assert code == 0
    assert [o["action"] for o in outcomes] == ["would-replay"]


def test_malformed_blob_is_reported_and_left_in_place(stack) -> None:
    estate(stack)
    stack.service()
    seed_dead_letters(stack)
    code, outcomes = cli("replay", "--yes")
    assert code == 0  # malformed items are reported, not failures
    actions = sorted(o["action"] for o in outcomes)
    assert actions == ["replayed", "replayed", "skipped-malformed", "skipped-malformed"]
    container = BlobServiceClient.from_connection_string(stack.storage).get_container_client(
        "eventgrid-deadletters"
    )
    assert len(list(container.list_blobs())) == 3  # nothing deleted


def test_http_replay_queues_and_the_queue_runs_it(stack) -> None:
    estate(stack)
    stack.service()
    seed_dead_letters(stack)
    body = json.dumps({"eventIds": ["dl-old"], "dryRun": True}).encode()
    response = function_app.replay_failed(http_request("POST", "/api/replay", body=body))
    assert response.status_code == 202 and json.loads(response.get_body())["runIds"] == []
    body = json.dumps({"key": KEY}).encode()
    response = function_app.replay_failed(http_request("POST", "/api/replay", body=body))
    answer = json.loads(response.get_body())
    assert response.status_code == 202 and len(answer["runIds"]) == 1
    dispatcher = stack.dispatcher(function_app.run_rotation)
    dispatcher.run_until_idle(timeout=60)
    dispatcher.close()
    [run_id] = answer["runIds"]
    status = function_app.get_rotation(
        http_request("GET", f"/api/rotations/{run_id}", route_params={"runId": run_id})
    )
    assert json.loads(status.get_body())["status"] == "succeeded"
    bad = function_app.replay_failed(http_request("POST", "/api/replay", body=b'{"eventIds": "dl-old"}'))
    assert bad.status_code == 400


def test_move_poison_timer_archives_messages_idempotently(stack) -> None:
    estate(stack)
    service = stack.service()
    request = new_request(parse_key_id(KEY), "http", "function-key")
    raw = QueueClient.from_connection_string(stack.storage, "rotation-requests-poison")
    raw.send_message(base64.b64encode(encode(request).encode()).decode())
    raw.send_message("not base64 and not json")
    function_app.move_poison(timer_request())
    function_app.move_poison(timer_request())
    assert raw.get_queue_properties().approximate_message_count == 0
    container = service.clients.blobs().get_container_client("rotation-poison")
    assert len(list(container.list_blobs())) == 2
    code, items = cli("deadletters", "list")
    assert code == 0
    assert sorted(bool(i["error"]) for i in items) == [False, True]


def test_identity_restored_then_replay_converges(stack) -> None:
    """A registry's identity lost access to the key (the vault refuses it); after access is
    restored, replaying the poisoned request converges."""
    estate(stack)
    stack.service()
    scenario = stack.admin.state()
    scenario["vaults"]["contoso-cmk"]["deniedIdentities"] = [s.identity_id("uai-acr")]
    stack.load(scenario)
    deliver_event_grid(
        function_app.on_key_event,
        [s.event_grid_event("KeyNewVersionCreated", "acr-cmk", NEW, event_id="denied-1")],
    )
    dispatcher = stack.dispatcher(function_app.run_rotation, max_dequeue_count=2)
    assert len(dispatcher.run_until_idle(timeout=60).poisoned) == 1
    dispatcher.close()
    _, items = cli("deadletters", "list")
    [item] = items
    assert "KeyVaultAccessFailed" in item["cause"]
    scenario = stack.admin.state()
    scenario["vaults"]["contoso-cmk"]["deniedIdentities"] = []  # access restored
    stack.load(scenario)
    code, outcomes = cli("replay", "--yes")
    assert code == 0 and [o["status"] for o in outcomes] == ["succeeded"]
    assert all(r["keyId"].endswith(NEW) for r in stack.admin.state()["registries"] if "acr-cmk" in r["keyId"])
