"""The run's narration: what a run records in its audit trail at each turn of the story
(started, the lease, the plan and everything found on the way, finished). Records only;
deciding and writing happen elsewhere."""

from __future__ import annotations

from typing import Any

from rotation.model.decisions import UPDATE
from rotation.model.events import EXPIRED
from rotation.model.request import RotationRequest, Shard
from rotation.model.results import Plan, RunResult, count
from rotation.run.stopping import INTERRUPTED
from rotation.storage.audit import AuditTrail
from rotation.storage.ledger import Lease
from rotation.storage.queue import shard_fields


def record_started(
    trail: AuditTrail, request: RotationRequest, attempt: int, lease: Lease | None, lease_seconds: float
) -> None:
    trail.record(
        "run-started",
        source=request.source,
        eventId=request.event_id,
        detail={
            "attempt": attempt,
            "eventType": request.event_type,
            "dryRun": request.dry_run,
            "eventVersion": request.event_version,
            "targets": len(request.targets) if request.targets is not None else None,
            "leaseWaits": request.lease_waits,
            **(shard_fields(request.shard) if request.shard else {}),  # the parent it is a shard of
        },
    )
    if lease is not None:
        trail.record(
            "lease-taken-over" if lease.taken_over_from else "lease-taken",
            detail={"previousOwner": lease.taken_over_from, "seconds": lease_seconds},
        )


def record_expired_event(request: RotationRequest, plan: Plan, trail: AuditTrail) -> None:
    still = [s for s in plan.steps if s.from_version and s.from_version == request.event_version]
    if still:
        trail.record(
            "incident",
            fromVersion=request.event_version,
            reason="consumers-on-expired-version",
            outcome="reported",
            message=f"version {request.event_version} expired while {len(still)} consumer(s) still used it",
            detail={"targets": [s.target for s in still][:100]},
        )


def _pinned(plan: Plan, trail: AuditTrail, shard: Shard | None) -> dict[str, Any]:
    """What the `plan` record pins: its plan document; a shard's is its parent's (the run
    plans once), and the shard's own steps are re-read subsets of it."""
    if shard is not None:
        return {"parentRunId": shard.parent_run_id, "shard": shard.index, "steps": len(plan.steps)}
    document = trail.attach_plan(plan_document(plan))
    return {"planDocument": document.name, "planDigest": document.digest, "steps": document.steps}


def record_plan(
    plan: Plan, trail: AuditTrail, result: RunResult, *, writes: bool = True, shard: Shard | None = None
) -> None:
    """`writes`: the run goes on to apply the plan (not a dry run)."""
    result.desired_version = plan.desired_version
    result.discovery_errors = list(plan.discovery_errors)
    result.notes.extend(plan.warnings)
    for warning in plan.warnings:
        trail.record("warning", message=warning)
    for error in plan.discovery_errors:
        trail.record(
            "discovery-failed",
            target=error["scope"],
            outcome="failed",
            errorCode=error["code"],
            message=error["message"],
            detail={"kind": error["kind"]},
        )
    for target in plan.not_consumers:
        trail.record(
            "not-a-consumer",
            target=target,
            outcome="skipped",
            message="requested target does not use this key (or no longer exists)",
        )
        result.notes.append(f"{target} does not use {plan.key.versionless_id}")
    plan_record = trail.record(
        "plan",
        toVersion=plan.desired_version,
        reason=plan.state.blocked_reason,
        detail={
            "summary": count(s.action for s in plan.steps),
            "currentVersion": plan.state.current_version,
            **_pinned(plan, trail, shard),
        },
    )
    # Durable before any write: the records so far and the plan document the `plan` record
    # pins. The per-step records below are written behind, in batches, as the run goes.
    trail.checkpoint(plan_record)
    for step in plan.steps:
        # A step the run writes has one record, its outcome (apply.py): the plan document
        # holds the decision. The others' decision is their record.
        if not (writes and step.action == UPDATE):
            trail.record(
                "plan-step",
                target=step.target,
                action=step.action,
                reason=step.reason,
                message=step.message,
                fromVersion=step.from_version,
                toVersion=step.to_version,
            )
        if step.reason == "current-version-expired":
            trail.record(
                "incident",
                target=step.target,
                fromVersion=step.from_version,
                reason="consumer-on-expired-version",
                message=step.message,
            )


def plan_document(plan: Plan) -> dict[str, Any]:
    """The whole plan as one value: what `audit verify` holds against the `plan` record."""
    return {
        "keyId": plan.key.versionless_id,
        "desiredVersion": plan.desired_version,
        "currentVersion": plan.state.current_version,
        "steps": [
            {
                "target": step.target,
                "kind": step.kind,
                "action": step.action,
                "reason": step.reason,
                "message": step.message,
                "fromVersion": step.from_version,
                "toVersion": step.to_version,
            }
            for step in plan.steps
        ],
    }


def record_findings(request: RotationRequest, plan: Plan, trail: AuditTrail, result: RunResult) -> None:
    """The plan and what came with it, and an expired-version incident. The plan is durable
    before any write (record_plan checkpoints it); the rest is written behind."""
    record_plan(plan, trail, result, writes=not request.dry_run, shard=request.shard)
    if request.event_type == EXPIRED:
        record_expired_event(request, plan, trail)


def record_finished(trail: AuditTrail, result: RunResult) -> None:
    trail.record(
        "run-finished",
        outcome=result.status,
        toVersion=result.desired_version,
        detail={"summary": count(s.outcome for s in result.steps), "exitCode": result.exit_code},
    )
    trail.flush()


def record_interrupted(trail: AuditTrail, result: RunResult, message: str | None) -> None:
    """Why the run stopped early (a signal or its budget) and what became of its updates."""
    progress = result.progress()
    said = (
        f"{progress['moved']} moved, {progress['inFlight']} in flight, "
        f"{progress['notStarted']} not started, {progress['failed']} failed"
    )
    budget = result.interrupted == "TimeBudgetExhausted"
    trail.record(
        "run-interrupted",
        outcome="interrupted",
        reason=result.interrupted,
        errorCode="TimeBudgetExhausted" if budget else INTERRUPTED,
        message=f"{'the time budget ended' if budget else result.interrupted}: {said}"
        + (f" ({message})" if message else ""),
        detail=progress,
    )
