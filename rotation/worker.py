"""Queue door: one rotation request -> reconcile.run.

A run with a failed target raises after the run is recorded, so the host makes the message
visible again after host.json's `visibilityTimeout` and, past `maxDequeueCount`, moves it to
`rotation-requests-poison`; reconcile is idempotent, so a retry is safe. A message that is not
a rotation request at all is put on the poison queue at once (nothing lost) and acknowledged.
"""

from __future__ import annotations

import logging

from .audit import AuditTrail
from .queue import InvalidRequest, RotationRequest, decode
from .reconcile import RunResult
from .service import Service

log = logging.getLogger("rotation.worker")


class RunFailed(Exception):
    """The run did not converge; raising makes the queue retry the message."""

    def __init__(self, result: RunResult) -> None:
        failed = [s.target for s in result.steps if s.outcome == "failed"]
        super().__init__(
            f"run {result.run_id} for {result.key_id} {result.status}: "
            f"{len(failed)} target(s) failed{', unreachable' if result.unreachable else ''}"
        )
        self.result = result


def handle_message(
    service: Service, body: bytes | str, *, dequeue_count: int = 1, message_id: str | None = None
) -> RunResult | None:
    try:
        request = decode(body)
    except InvalidRequest as exc:
        quarantine(service, body, str(exc), message_id)
        return None
    return run_request(service, request, attempt=dequeue_count)


def run_request(service: Service, request: RotationRequest, *, attempt: int = 1) -> RunResult:
    result = service.reconciler.run(request, attempt=attempt)
    log.info("run %s for %s: %s", result.run_id, result.key_id, result.status)
    if result.status == "failed":
        raise RunFailed(result)
    return result


def quarantine(service: Service, body: bytes | str, problem: str, message_id: str | None) -> None:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    trail = AuditTrail(service.audit, actor="queue")
    trail.record(
        "input-rejected",
        source="queue",
        outcome="rejected",
        reason="invalid-request",
        message=problem,
        detail={"messageId": message_id},
    )
    trail.flush()
    service.poison_queue.send_message(text)
    log.error(
        "queue message %s is not a rotation request (%s); moved to the poison queue", message_id, problem
    )
