"""Replay of failed work, for on-call engineers.

Failed work ends in two places:
1. Event Grid dead letters: blobs `eventgrid-deadletters/<SUBSCRIPTION>/YYYY/M/D/H/<guid>.json`,
   each a JSON array of the original events plus `deadLetterReason`, `deliveryAttempts`,
   `lastDeliveryOutcome`, `lastHttpStatusCode`, `publishTime`, `lastDeliveryAttemptTime`
   (lower case in CloudEvents schema).
2. The poison queue `rotation-requests-poison`: requests that failed every attempt. Queue
   messages expire and can only be peeked 32 at a time, so they are first moved into blobs
   `rotation-poison/YYYY/MM/DD/<message id>.json` (blob written, then the message deleted:
   stopping between the two loses nothing; the copy is idempotent by message id).

Both are listed together; replay re-processes selected items oldest first through the same
reconcile path as live events (reconcile works from current state, so an old event moves
consumers to the newest version, never back). Each replayed item gets a ledger marker keyed by
its blob path (and event id), holding outcome, time and operator, so a second replay skips it
unless forced. Malformed blobs are reported and left in place; nothing is ever deleted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from rotation.core.submit import submit
from rotation.model.events import EventRejected, KeyEvent, parse_mapping, strip_dead_letter_fields
from rotation.model.times import iso, parse_iso_or_none, utc_now
from rotation.service import DEADLETTER_CONTAINER, POISON_CONTAINER, Service
from rotation.storage.audit import AuditTrail
from rotation.storage.queue import InvalidRequest, RotationRequest, decode, new_request

log = logging.getLogger("rotation.replay")
_DONE = ("succeeded", "needs-attention")


@dataclass
class FailedItem:
    item_id: str  # the marker key: "<container>/<blob>#<event id or index>"
    source: str  # "deadletter" or "poison"
    location: str  # container/blob
    time: datetime | None
    event_id: str | None = None
    event_type: str | None = None
    key_id: str | None = None
    version: str | None = None
    reason: str | None = None
    attempts: int | None = None
    last_outcome: str | None = None
    last_status: int | None = None
    cause: str | None = None  # why it failed, from the audit trail of its last run
    error: str | None = None  # why it cannot be replayed (malformed, not a key event, ...)
    event: KeyEvent | None = field(default=None, repr=False)
    request: RotationRequest | None = field(default=None, repr=False)
    replayed: dict[str, Any] | None = None

    @property
    def replayable(self) -> bool:
        return self.error is None and (self.event is not None or self.request is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "source": self.source,
            "location": self.location,
            "time": iso(self.time) if self.time else None,
            "eventId": self.event_id,
            "eventType": self.event_type,
            "keyId": self.key_id,
            "version": self.version,
            "reason": self.reason,
            "attempts": self.attempts,
            "lastOutcome": self.last_outcome,
            "lastHttpStatus": self.last_status,
            "cause": self.cause,
            "error": self.error,
            "replayed": {
                k: v
                for k, v in (self.replayed or {}).items()
                if k in ("Outcome", "RunId", "Operator", "ReplayedAt")
            }
            or None,
        }


@dataclass(frozen=True)
class Selection:
    since: datetime | None = None
    until: datetime | None = None
    event_ids: tuple[str, ...] = ()
    key_id: str | None = None  # versionless
    reason: str | None = None

    def matches(self, item: FailedItem) -> bool:
        if self.since and item.time and item.time < self.since:
            return False
        if self.until and item.time and item.time > self.until:
            return False
        if self.event_ids and not (
            {item.event_id, item.request.request_id if item.request else None} & set(self.event_ids)
        ):
            return False
        if self.key_id and (item.key_id or "").lower() != self.key_id.lower():
            return False
        if self.reason:
            text = " ".join(x for x in (item.reason, item.cause, item.error) if x).lower()
            if self.reason.lower() not in text:
                return False
        return True


def _lower_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in raw.items()}


def _path_time(name: str) -> datetime | None:
    """The hour a dead-letter blob was written, from <SUBSCRIPTION>/YYYY/M/D/H/<guid>.json."""
    parts = name.split("/")
    try:
        year, month, day, hour = (int(p) for p in parts[-5:-1])
        return datetime(year, month, day, hour, tzinfo=UTC)
    except (ValueError, IndexError):
        return None


# -- reading -----------------------------------------------------------------------------------
def dead_letters(service: Service, selection: Selection) -> list[FailedItem]:
    container = service.clients.blobs().get_container_client(DEADLETTER_CONTAINER)
    items: list[FailedItem] = []
    try:
        blobs = list(container.list_blobs())
    except ResourceNotFoundError:
        return []
    for blob in blobs:
        hour = _path_time(blob.name)
        if hour and selection.until and hour > selection.until:
            continue
        if hour and selection.since and hour.timestamp() + 3600 < selection.since.timestamp():
            continue
        items.extend(
            _parse_dead_letter_blob(service, blob.name, container.download_blob(blob.name).readall(), hour)
        )
    return items


def _parse_dead_letter_blob(
    service: Service, name: str, content: bytes, hour: datetime | None
) -> list[FailedItem]:
    location = f"{DEADLETTER_CONTAINER}/{name}"
    try:
        payload = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        return [FailedItem(location, "deadletter", location, hour, error=f"malformed blob: {exc}")]
    entries = payload if isinstance(payload, list) else [payload]
    items = []
    for index, raw in enumerate(entries):
        if not isinstance(raw, Mapping):
            items.append(
                FailedItem(
                    f"{location}#{index}",
                    "deadletter",
                    location,
                    hour,
                    error="malformed entry: not a JSON object",
                )
            )
            continue
        meta = _lower_keys(raw)
        event_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        item = FailedItem(
            item_id=f"{location}#{event_id or index}",
            source="deadletter",
            location=location,
            time=parse_iso_or_none(meta.get("publishtime"))
            or parse_iso_or_none(meta.get("lastdeliveryattempttime"))
            or hour,
            event_id=event_id,
            event_type=raw.get("eventType") or raw.get("type"),
            reason=meta.get("deadletterreason"),
            attempts=_int(meta.get("deliveryattempts")),
            last_outcome=meta.get("lastdeliveryoutcome"),
            last_status=_int(meta.get("lasthttpstatuscode")),
        )
        try:
            event = parse_mapping(strip_dead_letter_fields(raw), service.settings.vault_allowed)
        except EventRejected as rejected:
            item.error = f"{rejected.reason}: {rejected.message}"
        else:
            item.event, item.key_id, item.version = event, event.key.versionless_id, event.version
            item.event_type = event.event_type
        items.append(item)
    return items


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


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
                _int(document.get("dequeueCount")),
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
        request = decode(text)
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
    attempts = _int(run.get("attempt")) if run else None
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


def list_failed(service: Service, selection: Selection, *, move: bool = True) -> list[FailedItem]:
    """Everything that failed, oldest first, with replay markers; moves poison messages first
    unless `move` is false (a dry run writes nothing and peeks at the queue instead)."""
    if move:
        move_poison(service)
    items = dead_letters(service, selection) + poison_items(service, selection, include_queue=not move)
    selected = [item for item in items if selection.matches(item)]
    for item in selected:
        item.replayed = service.ledger.replay_marker(item.item_id)
    return sorted(selected, key=lambda i: (i.time or datetime.min.replace(tzinfo=UTC), i.item_id))


# -- replaying ---------------------------------------------------------------------------------
@dataclass
class ReplayOutcome:
    item: FailedItem
    action: str  # replayed, queued, skipped-already-replayed, skipped-malformed, would-replay
    run_id: str | None = None
    status: str | None = None
    detail: str | None = None
    exit_code: int = 0  # the replayed run's (DESIGN.md section 7), for the CLI

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": self.item.item_id,
            "source": self.item.source,
            "keyId": self.item.key_id,
            "eventId": self.item.event_id,
            "action": self.action,
            "runId": self.run_id,
            "status": self.status,
            "detail": self.detail,
        }


def already_done(service: Service, marker: dict[str, Any] | None) -> bool:
    """A marker counts when its run converged, or was queued and has not failed since."""
    if not marker:
        return False
    if marker.get("Outcome") in _DONE:
        return True
    if marker.get("Outcome") == "queued" and marker.get("RunId"):
        run = service.runs.get(marker["RunId"])
        return run is None or run.get("status") != "failed"
    return False


def request_for(item: FailedItem, operator: str) -> RotationRequest:
    if item.event is not None:
        event = item.event
        return new_request(
            event.key,
            "replay",
            operator,
            event_id=event.event_id,
            event_type=event.event_type,
            event_version=event.version,
        )
    assert item.request is not None
    original = item.request
    return new_request(
        original.key,
        "replay",
        operator,
        event_id=original.event_id,
        event_type=original.event_type,
        event_version=original.event_version,
        targets=original.targets,
        dry_run=original.dry_run,
    )


Runner = Callable[[RotationRequest], Any]


def replay(
    service: Service,
    items: Iterable[FailedItem],
    *,
    operator: str,
    dry_run: bool = False,
    force: bool = False,
    run: Runner | None = None,
    progress: Callable[[ReplayOutcome], None] | None = None,
) -> list[ReplayOutcome]:
    """Replay items oldest first. `run` runs a request in-process (CLI) and returns its
    RunResult; without it the request is queued (HTTP answers within 230 s)."""
    trail = None if dry_run else AuditTrail(service.audit, actor=operator)
    outcomes = []
    for item in items:
        outcome = _replay_one(
            service, item, operator=operator, dry_run=dry_run, force=force, run=run, trail=trail
        )
        outcomes.append(outcome)
        if progress:
            progress(outcome)
    if trail is not None:
        trail.record(
            "replay-finished",
            source="replay",
            outcome="done",
            detail={"items": len(outcomes), "actions": _count(o.action for o in outcomes)},
        )
        trail.flush()
    return outcomes


def _replay_one(
    service: Service,
    item: FailedItem,
    *,
    operator: str,
    dry_run: bool,
    force: bool,
    run: Runner | None,
    trail: AuditTrail | None,
) -> ReplayOutcome:
    skipped = _skipped(service, item, force=force, trail=trail)
    if skipped is not None:
        return skipped
    request = request_for(item, operator)
    if dry_run:
        return ReplayOutcome(
            item, "would-replay", detail=f"{request.key_id} ({request.event_type or 'reconcile'})"
        )
    assert trail is not None
    trail.record(
        "replay-started",
        source="replay",
        keyId=request.key_id,
        eventId=item.event_id,
        toVersion=item.version,
        detail={"item": item.item_id, "runId": request.request_id, "forced": force and bool(item.replayed)},
    )
    trail.flush()
    action, status, exit_code = _hand_over(service, request, run)
    service.ledger.mark_replayed(
        item.item_id,
        Outcome=status,
        RunId=request.request_id,
        Operator=operator,
        Source=item.source,
        Location=item.location,
        EventId=item.event_id,
    )
    trail.record(
        "replayed",
        source="replay",
        keyId=request.key_id,
        eventId=item.event_id,
        outcome=status,
        detail={"item": item.item_id, "runId": request.request_id},
    )
    return ReplayOutcome(item, action, run_id=request.request_id, status=status, exit_code=exit_code)


def _skipped(
    service: Service, item: FailedItem, *, force: bool, trail: AuditTrail | None
) -> ReplayOutcome | None:
    """The outcome for an item that is not replayed (malformed, or replayed before and not
    forced), audited; None for an item to replay."""
    if not item.replayable:
        if trail:
            trail.record(
                "replay-skipped",
                source="replay",
                eventId=item.event_id,
                reason="malformed",
                message=item.error,
                detail={"item": item.item_id},
            )
        return ReplayOutcome(item, "skipped-malformed", detail=item.error)
    if force or not already_done(service, item.replayed):
        return None
    marker = item.replayed or {}
    if trail:
        trail.record(
            "replay-skipped",
            source="replay",
            eventId=item.event_id,
            reason="already-replayed",
            detail={"item": item.item_id, "runId": marker.get("RunId")},
        )
    return ReplayOutcome(
        item, "skipped-already-replayed", run_id=marker.get("RunId"), status=marker.get("Outcome")
    )


def _hand_over(service: Service, request: RotationRequest, run: Runner | None) -> tuple[str, str, int]:
    """(action, status, exit code): queued for the worker, or run here when `run` is given."""
    if run is None:
        submit(service.requests_queue, service.runs, request)
        return "queued", "queued", 0
    result = run(request)
    if result is None:
        return "replayed", "waiting", 0
    return "replayed", result.status, result.exit_code


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
