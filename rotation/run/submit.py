"""Queue a rotation request and record it as a queued run: the one way every door (Event
Grid intake, HTTP, replay, the sweep) hands work to the queue function."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotation.model.request import RotationRequest
from rotation.storage.queue import enqueue
from rotation.storage.runs import RunStore

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient


def submit(queue: QueueClient, runs: RunStore, request: RotationRequest) -> RotationRequest:
    """Enqueue `request`, then record its run as `queued` (so `GET /api/rotations/{runId}` finds
    it before the worker starts). A run record that already exists is left as it is."""
    enqueue(queue, request)
    runs.queued(
        request.request_id,
        key_id=request.key_id,
        source=request.source,
        actor=request.actor,
        dry_run=request.dry_run,
        event_id=request.event_id,
    )
    return request
