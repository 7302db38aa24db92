"""The rotation request's codec (the value is model/request.py): the one message on queue
`rotation-requests` (schema 1, DESIGN.md section 7). Produced only here; base64 text on the wire
(the Functions default), at most 64 KiB."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rotation.model.ids import InvalidId, parse_key_id, parse_resource_id
from rotation.model.request import SOURCES, InvalidRequest, RotationRequest, Shard
from rotation.model.times import utc_now

if TYPE_CHECKING:
    from collections.abc import Collection

    from azure.storage.queue import QueueClient

REQUESTS_QUEUE = "rotation-requests"
POISON_QUEUE = "rotation-requests-poison"
SCHEMA = 1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TEXT_FIELD = 1024  # eventId, eventType, eventVersion: stored whole in Table properties (64 KB)
_FIELDS = {
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
    *("parentRunId", "shard", "shards", "fence"),  # a shard of a large run (all four, or none)
}
_SHARD_FIELDS = ("parentRunId", "shard", "shards", "fence")


def to_message(request: RotationRequest) -> dict[str, Any]:
    raw = asdict(request)
    return {
        "schema": SCHEMA,
        "requestId": raw["request_id"],
        "source": raw["source"],
        "keyId": raw["key_id"],
        "eventId": raw["event_id"],
        "eventType": raw["event_type"],
        "eventVersion": raw["event_version"],
        "actor": raw["actor"],
        "dryRun": raw["dry_run"],
        "targets": list(raw["targets"]) if raw["targets"] is not None else None,
        "enqueuedAt": raw["enqueued_at"],
        "leaseWaits": raw["lease_waits"],
        **(shard_fields(request.shard) if request.shard else {}),
    }


def shard_fields(shard: Shard) -> dict[str, Any]:
    """A shard's fields in the message (and in its first audit record)."""
    return {
        "parentRunId": shard.parent_run_id,
        "shard": shard.index,
        "shards": shard.count,
        "fence": shard.fence,
    }


def _shard_of(data: dict[str, Any]) -> Shard | None:
    present = [name for name in _SHARD_FIELDS if name in data]
    if not present:
        return None
    if len(present) != len(_SHARD_FIELDS):
        missing = sorted(set(_SHARD_FIELDS) - set(present))
        raise InvalidRequest(f"a shard names all of {list(_SHARD_FIELDS)}; missing {missing}")
    try:
        parent = str(uuid.UUID(str(data["parentRunId"])))
    except ValueError:
        raise InvalidRequest("parentRunId must be a UUID") from None
    numbers = [data["shard"], data["shards"], data["fence"]]
    if any(type(n) is not int or n < 1 for n in numbers):
        raise InvalidRequest("shard, shards and fence must be positive integers")
    if data["shard"] > data["shards"]:
        raise InvalidRequest("shard must not exceed shards")
    return Shard(parent, data["shard"], data["shards"], data["fence"])


def encode(request: RotationRequest) -> str:
    """The message text (JSON; the queue client base64-encodes it)."""
    text = json.dumps(to_message(request), separators=(",", ":"))
    # base64 grows text by 4/3; the queue's limit applies to the encoded message.
    if (len(text.encode()) + 2) // 3 * 4 > MAX_MESSAGE_BYTES:
        raise InvalidRequest("the request is larger than a queue message allows (64 KiB); send fewer targets")
    return text


def unique_targets(targets: Any, accepted_types: Collection[str]) -> tuple[str, ...]:
    """Canonical ids of the accepted types (the registry's, rotation/azure/kinds, which this
    room may not import: the door passes them), each resource once (ARM ids compare
    case-insensitively)."""
    seen: dict[str, str] = {}
    for target in targets:
        resource = parse_resource_id(target, accepted_types)
        seen.setdefault(resource.key, str(resource))
    return tuple(seen.values())


def decode(body: bytes | str, accepted_types: Collection[str]) -> RotationRequest:
    """Parse and validate a decoded (not base64) message body; targets must be of the
    `accepted_types` (the registry's, passed by the door)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"not JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequest("a rotation request is a JSON object")
    if type(data.get("schema")) is not int or data.get("schema") != SCHEMA:
        raise InvalidRequest(f"unsupported schema {data.get('schema')!r}; expected {SCHEMA}")
    unknown = set(data) - _FIELDS
    if unknown:
        raise InvalidRequest(f"unknown fields {sorted(unknown)}")
    try:
        key = parse_key_id(str(data.get("keyId") or ""), allow_version=False)
    except InvalidId as exc:
        raise InvalidRequest(f"keyId: {exc}") from None
    if data.get("source") not in SOURCES:
        raise InvalidRequest(f"source must be one of {SOURCES}")
    try:
        uuid.UUID(str(data.get("requestId")))
    except ValueError:
        raise InvalidRequest("requestId must be a UUID") from None
    targets = data.get("targets")
    if targets is not None:
        if not isinstance(targets, list):
            raise InvalidRequest("targets must be a list of resource ids or null")
        try:
            targets = unique_targets(targets, accepted_types)
        except InvalidId as exc:
            raise InvalidRequest(f"targets: {exc}") from None
    for name in ("eventId", "eventType", "eventVersion"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise InvalidRequest(f"{name} must be a string or null")
        if len(data.get(name) or "") > MAX_TEXT_FIELD:
            raise InvalidRequest(f"{name} is longer than {MAX_TEXT_FIELD} characters")
    if not isinstance(data.get("actor"), str) or not data["actor"]:
        raise InvalidRequest("actor is required")
    if not isinstance(data.get("dryRun"), bool):
        raise InvalidRequest("dryRun must be true or false")
    waits = data.get("leaseWaits", 0)
    if type(waits) is not int or waits < 0:
        raise InvalidRequest("leaseWaits must be a non-negative integer")
    shard = _shard_of(data)
    if shard is not None and (targets is None or data["dryRun"]):
        raise InvalidRequest("a shard names its targets and is not a dry run")
    return RotationRequest(
        key_id=key.versionless_id,
        source=data["source"],
        actor=data["actor"][:256],
        request_id=str(data["requestId"]),
        event_id=data.get("eventId"),
        event_type=data.get("eventType"),
        event_version=data.get("eventVersion"),
        dry_run=data["dryRun"],
        targets=targets,
        enqueued_at=str(data.get("enqueuedAt") or utc_now()),
        lease_waits=waits,
        shard=shard,
    )


def enqueue(queue: QueueClient, request: RotationRequest, *, visibility_timeout: int | None = None) -> None:
    """Put a request on the queue (the client base64-encodes, as the Functions trigger expects)."""
    queue.send_message(encode(request), visibility_timeout=visibility_timeout)
