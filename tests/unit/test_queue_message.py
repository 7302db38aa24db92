"""The queue message contract (schema 1): round trip, validation, size limit."""

from __future__ import annotations

import base64
import json

import pytest
from azure.storage.queue import TextBase64EncodePolicy

from rotation.azure.kinds import accepted_types
from rotation.model.ids import parse_key_id
from rotation.model.request import InvalidRequest, new_request
from rotation.storage.queue import MAX_MESSAGE_BYTES, decode, encode

KEY = parse_key_id("https://contoso-cmk.vault.azure.net/keys/acr-cmk/9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b")
TARGET = "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/b1"


def test_round_trip_has_exactly_the_schema_fields() -> None:
    request = new_request(
        KEY,
        "event",
        "eventgrid:e1",
        event_id="e1",
        event_type="Microsoft.KeyVault.KeyNearExpiry",
        event_version=KEY.version,
        targets=(TARGET,),
    )
    message = json.loads(encode(request))
    assert set(message) == {
        "schema",
        "requestId",
        "source",
        "keyId",
        "eventId",
        "eventType",
        "eventVersion",
        "actor",
        "dryRun",
        "targets",
        "enqueuedAt",
        "leaseWaits",
    }
    assert message["schema"] == 1 and message["keyId"] == KEY.versionless_id and message["leaseWaits"] == 0
    assert message["enqueuedAt"].endswith("Z")
    assert decode(encode(request), accepted_types()) == request
    # What the Functions trigger reads: base64 of that JSON text.
    wire = TextBase64EncodePolicy().encode(encode(request))
    assert json.loads(base64.b64decode(wire))["requestId"] == request.request_id


def test_waiting_copy_counts_lease_waits() -> None:
    request = new_request(KEY, "http", "function-key")
    again = request.waited().waited()
    assert again.lease_waits == 2 and again.request_id == request.request_id


@pytest.mark.parametrize(
    ("mutation", "problem"),
    [
        ({"schema": 2}, "schema"),
        (
            {"keyId": "https://contoso-cmk.vault.azure.net/keys/acr-cmk/9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b"},
            "keyId",
        ),
        ({"source": "email"}, "source"),
        ({"requestId": "42"}, "requestId"),
        ({"targets": ["/not/an/id"]}, "targets"),
        ({"dryRun": "yes"}, "dryRun"),
        ({"leaseWaits": -1}, "leaseWaits"),
        ({"surprise": 1}, "unknown"),
        ({"actor": ""}, "actor"),
    ],
)
def test_invalid_messages_are_refused(mutation: dict, problem: str) -> None:
    message = json.loads(encode(new_request(KEY, "cli", "me")))
    message.update(mutation)
    with pytest.raises(InvalidRequest, match=problem):
        decode(json.dumps(message), accepted_types())
    with pytest.raises(InvalidRequest):
        decode(b"\xff\xfe not json", accepted_types())


def test_message_size_is_limited_after_base64() -> None:
    many = tuple(TARGET.replace("b1", f"b{i}") for i in range(MAX_MESSAGE_BYTES // 100))
    with pytest.raises(InvalidRequest, match="64 KiB"):
        encode(new_request(KEY, "http", "me", targets=many))


def test_booleans_are_not_numbers_here() -> None:
    for field, value in (("schema", True), ("leaseWaits", True)):
        message = json.loads(encode(new_request(KEY, "cli", "me")))
        message[field] = value
        with pytest.raises(InvalidRequest):
            decode(json.dumps(message), accepted_types())


def test_targets_are_unique_whatever_their_case() -> None:
    upper = TARGET.replace("resourceGroups/rg", "resourceGroups/RG").replace(
        "batchAccounts/b1", "batchAccounts/B1"
    )
    message = json.loads(encode(new_request(KEY, "http", "me")))
    message["targets"] = [TARGET, upper.replace("/rg/", "/RG/")]
    targets = decode(json.dumps(message), accepted_types()).targets
    assert targets is not None and len(targets) == 1
