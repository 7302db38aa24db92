"""Discarding a failed item that can never succeed (a typo'd key, a malformed blob): audited,
then marked in the ledger like a replay, so `replay` leaves it out (`--force` still takes it)
and `deadletters list` shows who discarded it and why. Nothing is deleted."""

from __future__ import annotations

from rotation.doors.replay.items import DISCARDED, FailedItem
from rotation.service import Service
from rotation.storage.audit import AuditTrail

MAX_REASON = 500


class DiscardRefused(ValueError):
    """The reason is missing or too long."""


def discard(service: Service, item: FailedItem, *, operator: str, reason: str) -> None:
    reason = " ".join(reason.split())
    if not reason or len(reason) > MAX_REASON:
        raise DiscardRefused(f"--reason must say why, in 1 to {MAX_REASON} characters")
    trail = AuditTrail(service.audit, actor=operator)
    trail.record(
        "deadletter-discarded",
        source="replay",
        keyId=item.key_id,
        eventId=item.event_id,
        outcome=DISCARDED,
        message=reason,
        detail={"item": item.item_id, "requestId": item.request_id, "source": item.source},
    )
    trail.flush()  # the record first: a marker nobody can account for would hide the item
    service.ledger.mark_replayed(
        item.item_id,
        Outcome=DISCARDED,
        Operator=operator,
        Reason=reason,
        Source=item.source,
        Location=item.location,
        EventId=item.event_id,
    )
