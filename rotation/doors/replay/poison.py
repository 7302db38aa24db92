"""The poison queue: messages archived as `rotation-poison` blobs (written, then deleted from
the queue), and archived or still-queued requests as failed items."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from datetime import UTC, datetime

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from rotation.azure.kinds import accepted_types
from rotation.doors.replay.items import FailedItem, Selection, as_int
from rotation.model.request import InvalidRequest
from rotation.model.times import iso, parse_iso_or_none, utc_now
from rotation.service import POISON_CONTAINER, Service
from rotation.storage.audit import AuditTrail
from rotation.storage.queue import decode


def archive_poison(
    service: Service, message_id: str, inserted: datetime, dequeue_count: int | None, content: str
) -> str:
    """Keep one poison message as a `rotation-poison` blob (content as the queue stores it);
    returns the blob name. Already there (archived before, the delete did not happen): kept."""
    container = service.clients.blobs().get_container_client(POISON_CONTAINER)
    name = f"{inserted:%Y/%m/%d}/{message_id}.json"
    document = {
        "messageId": message_id,
        "insertedOn": iso(inserted),
        "dequeueCount": dequeue_count,
        "movedAt": utc_now(),
        "content": content,
    }
    with contextlib.suppress(ResourceExistsError):
        container.upload_blob(name, json.dumps(document).encode(), overwrite=False)
    return name


def move_poison(service: Service, *, limit: int = 1000) -> int:
    """Move poison-queue messages into `rotation-poison` blobs; returns how many moved."""
    raw_queue = service.clients.raw_queue(service.poison_queue.queue_name)
    moved, names = 0, []
    while moved < limit:
        batch = list(raw_queue.receive_messages(max_messages=32, visibility_timeout=120))
        if not batch:
            break
        for message in batch:
            name = archive_poison(
                service,
                message.id,
                message.inserted_on or datetime.now(UTC),
                message.dequeue_count,
                message.content,
            )
            raw_queue.delete_message(message.id, message.pop_receipt)
            moved += 1
            names.append(name)
    if moved:
        trail = AuditTrail(service.audit, actor="move-poison")
        trail.record(
            "poison-moved", source="replay", outcome="moved", detail={"count": moved, "blobs": names[:50]}
        )
        trail.flush()
    return moved


def poison_items(service: Service, selection: Selection, *, include_queue: bool = False) -> list[FailedItem]:
    """Poison requests archived in `rotation-poison` (and, for dry runs, those still queued)."""
    container = service.clients.blobs().get_container_client(POISON_CONTAINER)
    items = []
    try:
        blobs = list(container.list_blobs())
    except ResourceNotFoundError:
        blobs = []
    for blob in blobs:
        location = f"{POISON_CONTAINER}/{blob.name}"
        try:
            document = json.loads(container.download_blob(blob.name).readall())
            content = document["content"]
        except (ValueError, KeyError, TypeError) as exc:
            items.append(FailedItem(location, "poison", location, None, error=f"malformed blob: {exc}"))
            continue
        items.append(
            _poison_item(
                service,
                location,
                content,
                parse_iso_or_none(document.get("insertedOn")),
                as_int(document.get("dequeueCount")),
            )
        )
    if include_queue:
        for message in service.clients.raw_queue(service.poison_queue.queue_name).peek_messages(
            max_messages=32
        ):
            location = f"{service.poison_queue.queue_name}/{message.id}"
            items.append(
                _poison_item(service, location, message.content, message.inserted_on, message.dequeue_count)
            )
    return items


def _poison_item(
    service: Service, location: str, content: str, inserted: datetime | None, dequeue_count: int | None
) -> FailedItem:
    item = FailedItem(
        location, "poison", location, inserted, reason="MaxDequeueCountExceeded", attempts=dequeue_count
    )
    try:
        text = base64.b64decode(content, validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        text = content  # a message that was never base64 (it may still be JSON)
    try:
        request = decode(text, accepted_types())
    except InvalidRequest as exc:
        item.error = f"not a rotation request: {exc}"
        return item
    item.request, item.key_id, item.version = request, request.key_id, request.event_version
    item.event_id, item.event_type = request.event_id, request.event_type
    item.time = item.time or parse_iso_or_none(request.enqueued_at)
    item.cause, attempts = last_failure(service, request.request_id)
    item.attempts = attempts or item.attempts
    return item


_FAILURE_KINDS = ("apply-outcome", "run-failed", "discovery-failed", "version-create-failed")


def last_failure(service: Service, run_id: str) -> tuple[str | None, int | None]:
    """Why the request's last attempt failed, from the audit trail of its run (the run record
    when the trail has nothing), and how many attempts it had."""
    run = service.runs.get(run_id)
    attempts = as_int(run.get("attempt")) if run else None
    anchor = service.audit.latest_anchor(run_id)
    if anchor:
        records = service.audit.run_records(run_id, anchor["partition"])
        starts = [r["seq"] for r in records if r["kind"] == "run-started"]
        last_attempt = [r for r in records if r["seq"] >= (starts[-1] if starts else 0)]
        failures = [r for r in last_attempt if r["kind"] in _FAILURE_KINDS and r.get("outcome") == "failed"]
        if failures:
            first = failures[0]
            where = (first.get("target") or first.get("keyId") or "").rsplit("/", 1)[-1]
            more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
            return f"{where}: {first.get('message') or first.get('errorCode')}{more}", attempts
    if run is None:
        return None, None
    failed = [step for step in run.get("steps", []) if step.get("outcome") == "failed"]
    if failed:
        return f"{failed[0]['target'].rsplit('/', 1)[-1]}: {failed[0].get('error')}", attempts
    return run.get("error") or run.get("message") or run.get("status"), attempts
