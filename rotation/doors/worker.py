"""Queue door: one rotation request -> reconcile.run, one run per key at a time.

- A redelivered event whose earlier run converged is skipped after one Table read; its run record
  says so (one write).
- If another run holds the key's lease, a copy of the request goes back on the queue,
  invisible until that lease would end (plus jitter), with `leaseWaits` counted up, and this
  message completes: waiting must not burn the message's retries.
- A run with a failed target raises after the run is recorded, so the host makes the message
  visible again (host.json `visibilityTimeout`) and, past `maxDequeueCount`, moves it to
  `rotation-requests-poison`; reconcile is idempotent, so a retry is safe.
- A message that is not a rotation request at all is put on the poison queue at once (nothing
  lost) and acknowledged.
- An attempt runs inside `ROTATION_WORKER_BUDGET_SECONDS` (default 1740 s, under host.json's
  30-minute functionTimeout): storage that stops answering ends the attempt with
  BudgetExhausted, and the host retries the message like any failed attempt.
- A rollout soaking between canary waves puts the same request back on the queue
  (`continue_later`), inside that budget: a queue that does not answer fails the attempt, and
  the retried message re-checks the waves from the ledger's progress.
- SIGTERM (the host stopping the instance; doors/sigterm.py) or the run's budget ending closes
  the run as `interrupted` with its writes recorded, and the same request goes back on the queue
  (`continue_interrupted`) so the rest is done later, by this instance or another. A budget that
  ends before anything moved raises instead (RunInterrupted), so a request that can never make
  progress reaches the poison queue rather than coming back for ever.
"""

from __future__ import annotations

import base64
import logging
import math
import random
import uuid
from datetime import UTC, datetime

from rotation.azure.budget import door_budget
from rotation.azure.kinds import accepted_types
from rotation.doors.replay import archive_poison
from rotation.doors.sigterm import host
from rotation.model.errors import RotationError
from rotation.model.request import InvalidRequest, RotationRequest
from rotation.model.results import RunResult
from rotation.run.allowed import not_allowed
from rotation.run.shardrun import ended_already, shard_ended, stop_fenced
from rotation.service import Service
from rotation.storage.audit import AuditTrail
from rotation.storage.fence import hold
from rotation.storage.ledger import Lease, LeaseHeld, lease_owner
from rotation.storage.queue import MAX_MESSAGE_BYTES, decode, encode, enqueue

log = logging.getLogger("rotation.worker")
MAX_LEASE_WAITS = 50  # an hour or more of waiting means the holder is stuck: fail loudly


class RunFailed(RotationError):
    """The run did not converge; raising makes the queue retry the message."""

    def __init__(self, result: RunResult) -> None:
        failed = [s.target for s in result.steps if s.outcome == "failed"]
        super().__init__(
            f"run {result.run_id} for {result.key_id} {result.status}: {len(failed)} target(s) failed"
            f"{'; ' + result.error.summary() if result.error else ''}"
        )
        self.result = result


class RunInterrupted(RunFailed):
    """The run's budget ended before it moved anything: retrying the message as a failure keeps a
    request that can never progress from coming back for ever (the host poisons it)."""


class LeaseWaitExceeded(RotationError):
    """A request waited for its key's lease too many times."""


def handle_message(
    service: Service, body: bytes | str, *, dequeue_count: int = 1, message_id: str | None = None
) -> RunResult | None:
    with door_budget(service.settings.worker_budget_seconds):
        service.ensure_storage()
        try:
            request = decode(body, accepted_types())
        except InvalidRequest as exc:
            quarantine(service, body, str(exc), message_id)
            return None
        return run_request(service, request, attempt=dequeue_count)


def run_request(service: Service, request: RotationRequest, *, attempt: int = 1) -> RunResult | None:
    """Run the request under the key's lease; None when it was skipped or put back to wait."""
    forbidden = not_allowed(request, service.settings)
    if forbidden:  # e.g. queued before the allow-list was narrowed: never acted on
        quarantine(service, encode(request), forbidden, None)
        return None
    if request.shard is not None:
        return run_shard(service, request, attempt)
    if request.source == "event" and (earlier := service.ledger.converged(request.event_id)):
        skip_duplicate(service, request, earlier)
        return None
    lease = service.ledger.acquire(request.key, owner=lease_owner(request.request_id))
    if isinstance(lease, LeaseHeld):
        wait_for_lease(service, request, lease)
        return None
    return _counted(service, request, attempt, lease)


def _counted(service: Service, request: RotationRequest, attempt: int, lease: Lease) -> RunResult:
    lease.keep_alive()
    with host.lock:
        host.running += 1  # a SIGTERM ends the process only once this run is closed and requeued
    try:
        return _run_held(service, request, attempt, lease)
    finally:
        with host.lock:
            host.running -= 1


def run_shard(service: Service, request: RotationRequest, attempt: int) -> RunResult | None:
    """A shard of a large run (run/sharding.py), under its parent's lease while the fence holds.
    A stale fence stops it without writing; a replayed shard (its parent's lease gone) takes
    the key's lease as a new generation for its own targets, or waits for it like any run. A
    shard delivered again after it ended runs nothing (its instance died after its mark)."""
    shard = request.shard
    assert shard is not None
    if request.source != "replay" and ended_already(service.shards, request):
        return None  # redelivered past its mark: it closed the parent if that was left
    lease: Lease | LeaseHeld | None = hold(service.ledger, request.key, shard.parent_run_id, shard.fence)
    if lease is None and request.source != "replay":
        stop_fenced(service.shards, request)
        return None
    if lease is None:
        lease = service.ledger.acquire(request.key, owner=lease_owner(request.request_id))
    if isinstance(lease, LeaseHeld):
        wait_for_lease(service, request, lease)
        return None
    service.shards.book.note(shard.parent_run_id, shard.index, "running")
    return _counted(service, request, attempt, lease)


def _run_held(service: Service, request: RotationRequest, attempt: int, lease: Lease) -> RunResult:
    try:
        result = service.reconciler.run(request, attempt=attempt, lease=lease, stop=host.stop)
    finally:
        lease.release()
    log.info("run %s for %s: %s", result.run_id, result.key_id, result.status)
    if request.shard is not None:
        shard_ended(service.shards, request, result, attempt)
    if request.event_id and not request.dry_run and result.status in ("succeeded", "needs-attention"):
        service.ledger.record_event(
            request.event_id,
            outcome=result.status,
            run_id=result.run_id,
            key_id=result.key_id,
            version=request.event_version,
        )
    if result.status == "failed":
        if result.error is not None and result.error.final:
            poison_now(service, request, result)  # a retry would fail the same way
            return result
        raise RunFailed(result)
    if result.status == "interrupted":
        continue_interrupted(service, request, result)
    continue_later(service, request, result)
    return result


def poison_now(service: Service, request: RotationRequest, result: RunResult) -> None:
    """The run could not start for a reason no retry changes (the key does not exist, the vault
    is not allowed or refuses the identity: `ErrorInfo.final`). One attempt, then
    the request goes to the poison queue, where on-call sees its cause (`deadletters list`),
    replays it once the cause is fixed, or discards it; the message itself completes."""
    assert result.error is not None
    trail = AuditTrail(service.audit, run_id=request.request_id, key=request.key, actor=request.actor)
    trail.record(
        "request-poisoned",
        outcome="poisoned",
        errorCode=result.error.code,
        message=f"not retried: {result.error.summary()}",
    )
    trail.flush()
    service.poison_queue.send_message(encode(request))
    log.error(
        "request %s moved to the poison queue after one attempt (not retried): %s",
        request.request_id,
        result.error.summary(),
    )


def continue_interrupted(service: Service, request: RotationRequest, result: RunResult) -> None:
    """The rest of an interrupted run comes back on the queue; the run's record says when."""
    progress = result.progress()
    if result.interrupted == "TimeBudgetExhausted" and not progress["moved"]:
        raise RunInterrupted(result)
    later = service.settings.resume_after_seconds
    enqueue(service.requests_queue, request, visibility_timeout=later)
    service.runs.note(
        request.request_id,
        "interrupted",
        f"{result.interrupted}: {progress['moved']} moved, {progress['notStarted']} not started; "
        f"the request is back on the queue in {later}s for the rest",
    )


def continue_later(service: Service, request: RotationRequest, result: RunResult) -> None:
    """Canary waves soaking (any door): the same request goes back on the queue and returns after
    `requeue_after` seconds to re-check the earlier waves before going on. Progress is in the
    ledger; a soak is not a lease wait, so `leaseWaits` is not counted up."""
    if not result.requeue_after:
        return
    enqueue(service.requests_queue, request, visibility_timeout=result.requeue_after)
    service.runs.note(request.request_id, "soaking", f"later waves continue in {result.requeue_after}s")


def wait_for_lease(service: Service, request: RotationRequest, held: LeaseHeld) -> None:
    if request.lease_waits >= MAX_LEASE_WAITS:
        raise LeaseWaitExceeded(
            f"request {request.request_id} waited {request.lease_waits} times for the lease "
            f"on {request.key_id}, held by {held.owner}"
        )
    # back when the lease would expire (or sooner, by the setting), jittered so waiters spread out
    left = min(math.ceil(held.seconds_left()), service.settings.lease_wait_seconds)
    delay = left + random.randint(1, 5)  # noqa: S311 - jitter, not crypto
    again = request.waited()
    trail = AuditTrail.for_request(service.audit, request)
    trail.record(
        "lease-waited",
        outcome="requeued",
        detail={"holder": held.owner, "delaySeconds": delay, "leaseWaits": again.lease_waits},
    )
    enqueue(service.requests_queue, again, visibility_timeout=delay)
    trail.flush()
    service.runs.note(request.request_id, "waiting", f"run {held.owner} holds the key; retrying in {delay}s")


def skip_duplicate(service: Service, request: RotationRequest, earlier: dict) -> None:
    """The run record says why the request ended (one write); nothing is audited, since
    nothing is decided: the converged run's trail holds the decision."""
    service.runs.note(
        request.request_id,
        "skipped",
        f"duplicate of run {earlier.get('RunId')} ({earlier.get('Outcome')}) for event {request.event_id}",
    )
    log.info(
        "request %s skipped: event %s already converged in run %s",
        request.request_id,
        request.event_id,
        earlier.get("RunId"),
    )


def quarantine(service: Service, body: bytes | str, problem: str, message_id: str | None) -> None:
    """Audit the rejection, then keep the message for on-call: on the poison queue, or, when it
    is too large to be a queue message again, straight in `rotation-poison` where
    move_poison would have put it."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    size = len(text.encode())
    trail = AuditTrail(service.audit, actor="queue")
    trail.record(
        "input-rejected",
        source="queue",
        outcome="rejected",
        reason="invalid-request",
        message=problem,
        detail={"messageId": message_id, "bytes": size},
    )
    trail.flush()
    encoded = base64.b64encode(text.encode()).decode()
    if len(encoded) <= MAX_MESSAGE_BYTES:
        service.poison_queue.send_message(text)
        where = "the poison queue"
    else:
        where = archive_poison(service, message_id or str(uuid.uuid4()), datetime.now(UTC), None, encoded)
    log.error("queue message %s is not a rotation request (%s); moved to %s", message_id, problem, where)
