"""Event Grid door: parse, validate, audit and enqueue, in well under a second.

A bad or disallowed event is rejected with an audit record and acknowledged (retrying it
cannot help, and a Python function cannot answer 400 to Event Grid). If the request cannot be
enqueued or audited, the error propagates so Event Grid redelivers and finally dead-letters.
The whole door runs inside `ROTATION_DOOR_BUDGET_SECONDS` (default 20 s, under Event Grid's
30 s): storage that stops answering fails the delivery with BudgetExhausted instead of holding
it. A redelivery after a request was already queued is harmless: the worker skips an event
whose run converged, and reconcile is idempotent. A redelivery of an event whose run converged
is counted on the ledger's event row (one Table read, one write) and logged, not audited: it
decides nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from rotation.azure.budget import door_budget
from rotation.model.events import EventRejected, KeyEvent, parse_function_event
from rotation.model.request import RotationRequest, new_request
from rotation.run.submit import submit
from rotation.service import Service
from rotation.storage.audit import AuditTrail

log = logging.getLogger("rotation.intake")


def handle_event(service: Service, event: Any) -> RotationRequest | None:
    """Turn one delivered event into a queued rotation request; None when rejected."""
    with door_budget(service.settings.door_budget_seconds):
        service.ensure_storage()
        return _handle(service, event)


def _handle(service: Service, event: Any) -> RotationRequest | None:
    try:
        key_event = parse_function_event(event, service.settings.vault_allowed)
    except EventRejected as rejected:
        reject(service, rejected, source="event")
        return None
    except Exception as exc:
        log.exception("event parser failed on a delivery")
        reject(
            service,
            EventRejected("unparseable", f"the event could not be read ({type(exc).__name__})"),
            source="event",
        )
        return None
    earlier = service.ledger.converged(key_event.event_id)
    if earlier:  # a redelivery of an event whose run converged: one Table read, one write, no ARM
        count = service.ledger.note_redelivery(earlier, source="eventgrid")
        log.info(
            "event %s already converged in run %s (%s); redelivery %d skipped",
            key_event.event_id,
            earlier.get("RunId"),
            earlier.get("Outcome"),
            count,
        )
        return None
    return enqueue_event(service, key_event)


def reject(service: Service, rejected: EventRejected, *, source: str, actor: str = "eventgrid") -> None:
    trail = AuditTrail(service.audit, actor=actor)
    trail.record(
        "input-rejected",
        source=source,
        eventId=rejected.event_id,
        outcome="rejected",
        reason=rejected.reason,
        message=rejected.message,
        detail={"eventType": rejected.event_type},
    )
    trail.flush()
    log.warning("rejected %s input %s: %s", source, rejected.event_id, rejected.message)


def enqueue_event(
    service: Service,
    event: KeyEvent,
    *,
    source: str = "event",
    actor: str | None = None,
    detail: dict[str, Any] | None = None,
) -> RotationRequest:
    request = new_request(
        event.key,
        source,
        actor or f"eventgrid:{event.event_id}",
        event_id=event.event_id,
        event_type=event.event_type,
        event_version=event.version,
    )
    trail = AuditTrail.for_request(service.audit, request)
    trail.record(
        "event-received",
        source=source,
        eventId=event.event_id,
        toVersion=event.version,
        detail={
            "eventType": event.event_type,
            "schema": event.schema,
            "nbf": event.not_before,
            "exp": event.expires,
            **(detail or {}),
        },
    )
    submit(service.requests_queue, service.runs, request)
    trail.record(
        "request-queued", source=source, eventId=event.event_id, toVersion=event.version, outcome="queued"
    )
    trail.flush()
    return request
