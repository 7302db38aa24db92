"""Everything that failed, oldest first, with its replay markers and why it last failed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rotation.doors.replay.deadletters import dead_letters
from rotation.doors.replay.items import FailedItem, Selection
from rotation.doors.replay.poison import move_poison, poison_items
from rotation.service import Service


def list_failed(service: Service, selection: Selection, *, move: bool = True) -> list[FailedItem]:
    """Everything that failed, oldest first, with replay markers; moves poison messages first
    unless `move` is false (a dry run writes nothing and peeks at the queue instead)."""
    if move:
        move_poison(service)
    items = dead_letters(service, selection) + poison_items(service, selection, include_queue=not move)
    selected = [item for item in items if selection.matches(item)]
    for item in selected:
        item.replayed = service.ledger.replay_marker(item.item_id)
        item.replay_run_status = _queued_run_status(service, item.replayed)
    if selection.not_replayed:
        selected = [item for item in selected if item.awaiting_replay]
    return sorted(selected, key=lambda i: (i.time or datetime.min.replace(tzinfo=UTC), i.item_id))


def _queued_run_status(service: Service, marker: dict[str, Any] | None) -> str | None:
    """A replay queued over HTTP ran later on the worker: its run says how it ended."""
    if not marker or marker.get("Outcome") != "queued" or not marker.get("RunId"):
        return None
    run = service.runs.get(str(marker["RunId"]))
    status = run.get("status") if run else None
    return str(status) if status and status != "queued" else None
