"""Replaying selected items through the same path as live events: queued for the worker, or
run in-process by the CLI; each item marked in the ledger so a second replay skips it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rotation.doors.replay.items import FailedItem
from rotation.model.request import RotationRequest, new_request
from rotation.model.results import count
from rotation.run.stopping import Stop
from rotation.run.submit import submit
from rotation.service import Service
from rotation.storage.audit import AuditTrail
from rotation.storage.ledger import CONVERGED

_EXIT_FAILED, _EXIT_UNREACHABLE = 4, 5  # DESIGN.md section 7's CLI exit codes


@dataclass
class ReplayOutcome:
    item: FailedItem
    action: (
        str  # replayed, queued, skipped-already-replayed, skipped-discarded, skipped-malformed, would-replay
    )
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
            "requestId": self.item.request_id,
            "action": self.action,
            "runId": self.run_id,
            "status": self.status,
            "detail": self.detail,
        }


def already_done(service: Service, marker: dict[str, Any] | None) -> bool:
    """A marker counts when its run converged, or was queued and has not failed since."""
    if not marker:
        return False
    if marker.get("Outcome") in CONVERGED:
        return True
    if marker.get("Outcome") == "queued" and marker.get("RunId"):
        run = service.runs.get(marker["RunId"])
        return run is None or run.get("status") != "failed"
    return False


def request_for(item: FailedItem, operator: str) -> RotationRequest:
    """A new request for the item, from the operator: the dead-lettered event's, or the poison
    request's with its targets and dry-run flag."""
    fields: dict[str, Any]
    if item.event is not None:
        key, event = item.event.key, item.event
        fields = {"event_id": event.event_id, "event_type": event.event_type, "event_version": event.version}
    else:
        assert item.request is not None  # a replayable item holds one or the other
        key, original = item.request.key, item.request
        fields = {
            "event_id": original.event_id,
            "event_type": original.event_type,
            "event_version": original.event_version,
            "targets": original.targets,
            "dry_run": original.dry_run,
        }
        if original.shard is not None:  # still that run's shard: the same run id and fence
            fields |= {"shard": original.shard, "request_id": original.request_id}
    return new_request(key, "replay", operator, **fields)


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
    stop: Stop | None = None,
) -> list[ReplayOutcome]:
    """Replay items oldest first. `run` runs a request in-process (CLI) and returns its
    RunResult; without it the request is queued (HTTP answers within 230 s). Once `stop` is
    asked (Ctrl-C) no further item starts: those left carry no replay marker, so the next
    replay takes them."""
    trail = None if dry_run else AuditTrail(service.audit, actor=operator)
    outcomes: list[ReplayOutcome] = []
    items = list(items)
    for item in items:
        if stop is not None and stop.asked:
            break
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
            outcome="interrupted" if stop is not None and stop.asked else "done",
            detail={"items": len(outcomes), "actions": count(o.action for o in outcomes)}
            | _stopped(stop, len(items) - len(outcomes)),
        )
        trail.flush()
    return outcomes


def _stopped(stop: Stop | None, left: int) -> dict[str, Any]:
    """What `replay-finished` says of a replay stopped before its last item."""
    if stop is None or not stop.asked:
        return {}
    return {"stopped": stop.reason, "notStarted": left}


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
    if item.discarded and not force:
        if trail:
            trail.record(
                "replay-skipped",
                source="replay",
                eventId=item.event_id,
                reason="discarded",
                detail={"item": item.item_id},
            )
        return ReplayOutcome(item, "skipped-discarded", detail=(item.replayed or {}).get("Reason"))
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
    # A replayed run that failed is exit 4 (runbook section 3) even when `rotate` would call its
    # cause a usage error (a key deleted since: 2): the operator's replay command was right.
    failed = result.status == "failed" and result.exit_code != _EXIT_UNREACHABLE
    return "replayed", result.status, _EXIT_FAILED if failed else result.exit_code
