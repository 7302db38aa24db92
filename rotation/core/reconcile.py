"""reconcile(key): compare every consumer of a key with the version it should be on, and close
the gap. Every door (event, HTTP, replay, sweep, CLI) ends here, and the desired state is read
from Key Vault and ARM each time, so duplicate, late, out-of-order and lost events all converge.

Plan first (values only), then apply the `update` steps in a bounded pool. Each step asks
first whether its work is already done, writes, then reads back to verify; a failed step
leaves its target on its old version and does not stop the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rotation.azure import outcomes
from rotation.azure.clients import Clients
from rotation.azure.discovery import Inventory, list_consumers, read_targets
from rotation.azure.kinds import ApplyContext, Consumer, TargetKind, all_kinds
from rotation.azure.kinds.containergroup import REDEPLOY_CONTAINER, ContainerGroups, saved_consumer
from rotation.azure.retry import (
    Deadline,
    ErrorInfo,
    RetryPolicy,
    TransientCondition,
    call,
    classify,
    remediation,
)
from rotation.azure.vault import KeyState, read_key_state
from rotation.config import Settings
from rotation.core import waves
from rotation.core.policy import BLOCKED, NEEDS_PERSON, UPDATE, Decision, PolicyContext, decide, opted_out
from rotation.core.renewal import KeyMaintenance, RenewalFailed
from rotation.model.events import EXPIRED
from rotation.model.ids import KeyRef, parse_resource_id
from rotation.storage.audit import AuditStore, AuditTrail, AuditUnavailable
from rotation.storage.ledger import Lease, Ledger
from rotation.storage.queue import RotationRequest, not_allowed
from rotation.storage.runs import RunStore

log = logging.getLogger("rotation.reconcile")
_BUSY_STATES = {"updating", "creating", "deleting", "pending", "accepted", "repairing"}


class Unreachable(Exception):
    """Key Vault or ARM could not be read, so no plan can be trusted."""

    def __init__(self, what: str, info: ErrorInfo) -> None:
        super().__init__(f"{what}: {info.summary()}")
        self.info = info


class VerificationFailed(Exception):
    """The write was accepted but the resource does not show the new version."""


class LeaseLost(Exception):
    """Another run took over the key's lease: stop touching its consumers."""


def _check_not_failed(target: str, consumer: Consumer) -> None:
    """A resource that shows the new version but whose provisioning failed is not verified."""
    state = (consumer.provisioning_state or "").lower()
    if state in ("failed", "canceled"):
        raise VerificationFailed(
            f"{target} shows the new version but its provisioning state is {consumer.provisioning_state}"
        )


@dataclass(frozen=True)
class PlanStep:
    target: str
    kind: str
    action: str
    reason: str
    message: str
    from_version: str | None
    to_version: str | None
    consumer: Consumer = field(repr=False, compare=False)
    wave: str = waves.LAST

    @classmethod
    def of(cls, consumer: Consumer, decision: Decision, desired: str | None) -> PlanStep:
        return cls(
            consumer.target,
            consumer.kind,
            decision.action,
            decision.reason,
            decision.message,
            consumer.version,
            desired,
            consumer,
            waves.wave_of(consumer.tags),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "action": self.action,
            "reason": self.reason,
            "message": self.message,
            "fromVersion": self.from_version,
            "toVersion": self.to_version,
            "wave": self.wave,
        }


@dataclass(frozen=True)
class Plan:
    key: KeyRef
    state: KeyState
    steps: tuple[PlanStep, ...]
    discovery_errors: tuple[dict[str, Any], ...] = ()
    not_consumers: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def desired_version(self) -> str | None:
        return self.state.desired.version if self.state.desired else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "keyId": self.key.versionless_id,
            "desiredVersion": self.desired_version,
            "currentVersion": self.state.current_version,
            "blockedReason": self.state.blocked_reason,
            "steps": [s.to_dict() for s in self.steps],
            "summary": _count(s.action for s in self.steps),
            "waves": waves.summary(waves.group(self.steps)),
            "discoveryErrors": list(self.discovery_errors),
            "notConsumers": list(self.not_consumers),
            "warnings": list(self.warnings),
        }


@dataclass
class StepResult:
    target: str
    kind: str
    action: str
    reason: str
    message: str
    from_version: str | None
    to_version: str | None
    outcome: str  # planned, updated, verified, skipped, failed
    error_code: str | None = None
    error: str | None = None
    hint: str | None = None
    duration_ms: int | None = None
    attempts: int = 0
    wave: str | None = None

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        return {
            "target": raw["target"],
            "kind": raw["kind"],
            "action": raw["action"],
            "reason": raw["reason"],
            "message": raw["message"],
            "fromVersion": raw["from_version"],
            "toVersion": raw["to_version"],
            "outcome": raw["outcome"],
            "errorCode": raw["error_code"],
            "error": raw["error"],
            "hint": raw["hint"],
            "durationMs": raw["duration_ms"],
            "attempts": raw["attempts"],
            "wave": raw["wave"],
        }


@dataclass
class RunResult:
    run_id: str
    key_id: str
    dry_run: bool
    desired_version: str | None = None
    created_version: str | None = None
    steps: list[StepResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    discovery_errors: list[dict[str, Any]] = field(default_factory=list)
    error: ErrorInfo | None = None  # the run could not plan (Key Vault unreadable, renewal failed)
    started_at: str = field(default_factory=lambda: _iso(datetime.now(UTC)))
    finished_at: str | None = None
    halted: str | None = None  # "halted after wave n: ..." (canary waves)
    requeue_after: int | None = None  # soaking between waves: continue after this many seconds
    soaking: bool = False  # held for a canary-wave soak (requeued, or another request carries on)

    @property
    def status(self) -> str:
        """DESIGN.md section 7: a run fails only when a step failed or a consumer meant to update did
        not. An unreachable scope fails it too (there may be consumers it could not see; a retry
        will); a scope it may not read is reported for a person."""
        if self.error is not None:
            return "failed"
        if any(s.outcome == "failed" for s in self.steps):
            return "failed"
        if self.soaking and self.halted is None:
            return "soaking"  # the later waves wait for ROTATION_WAVE_SOAK_MINUTES
        if not self.dry_run and any(
            s.action == UPDATE and s.outcome not in ("verified", "updated") for s in self.steps
        ):
            return "failed"
        if any(e.get("unreachable") for e in self.discovery_errors):
            return "failed"
        if self.discovery_errors or any(s.action in NEEDS_PERSON for s in self.steps):
            return "needs-attention"
        return "succeeded"

    @property
    def exit_code(self) -> int:
        """DESIGN.md section 7: 0 converged, 3 needs a person, 4 a target failed, 5 unreachable."""
        if (self.error is not None and self.error.unreachable) or any(
            e.get("unreachable") for e in self.discovery_errors
        ):
            return 5
        if self.error is not None and self.error.status == 404:
            return 2  # the key does not exist: a usage error
        return {"failed": 4, "needs-attention": 3}.get(self.status, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "keyId": self.key_id,
            "dryRun": self.dry_run,
            "status": self.status,
            "desiredVersion": self.desired_version,
            "createdVersion": self.created_version,
            "summary": _count(s.outcome for s in self.steps),
            "notes": self.notes,
            "discoveryErrors": self.discovery_errors,
            "error": self.error.summary() if self.error else None,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "halted": self.halted,
            "requeueAfterSeconds": self.requeue_after,
            "steps": [s.to_dict() for s in self.steps],
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _error_dict(scope: str, kind: str, info: ErrorInfo) -> dict[str, Any]:
    return {
        "scope": scope,
        "kind": kind,
        "status": info.status,
        "code": info.code,
        "message": info.message,
        "unreachable": info.unreachable,
    }


ProgressCallback = Callable[[StepResult], None]


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        *,
        audit: AuditStore,
        runs: RunStore | None = None,
        kinds: list[TargetKind] | None = None,
        ledger: Ledger | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger  # wave progress between attempts (canary waves with a soak)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.clients = clients
        self.audit = audit
        self.runs = runs
        self.kinds = {k.kind: k for k in (kinds or all_kinds())}
        self.retry = RetryPolicy(
            settings.retry_initial_seconds, settings.retry_max_seconds, settings.retry_attempts
        )

    # -- reading ----------------------------------------------------------------------------
    def read_state(self, key: KeyRef, deadline: Deadline | None = None) -> KeyState:
        try:
            return call(
                lambda: read_key_state(self.clients.keys(key.vault_url), key),
                policy=self.retry,
                deadline=deadline,
                what=f"read {key.versionless_id}",
            )
        except Exception as exc:
            raise Unreachable(f"reading {key.versionless_id}", classify(exc)) from exc

    def inventory(self, key: KeyRef, targets: tuple[str, ...] | None, deadline: Deadline | None) -> Inventory:
        if targets is not None:
            ids = [parse_resource_id(t) for t in targets]
            return read_targets(
                self.clients,
                key,
                ids,
                policy=self.retry,
                deadline=deadline,
                workers=self.settings.concurrency,
            )
        inventory = list_consumers(
            self.clients,
            self.settings.subscriptions,
            policy=self.retry,
            deadline=deadline,
            kinds=list(self.kinds.values()),
            workers=self.settings.concurrency,
        )
        return inventory.for_key(key)

    def _kind_checks(self, kind: str) -> tuple[Any, ...]:
        found = self.kinds.get(kind)
        return tuple(getattr(found, "plan_checks", ())) if found is not None else ()

    def plan(
        self,
        key: KeyRef,
        targets: tuple[str, ...] | None = None,
        deadline: Deadline | None = None,
    ) -> Plan:
        """Read-only: what a run would do now. Raises Unreachable when Key Vault cannot be read."""
        key = key.versionless()
        # Key Vault and ARM are read at the same time: neither needs the other's answer.
        with ThreadPoolExecutor(max_workers=1) as pool:
            listing = pool.submit(self.inventory, key, targets, deadline)
            try:
                state = self.read_state(key, deadline)
            except Unreachable:
                listing.cancel()
                raise
            inventory = listing.result()
        return self.plan_from(key, state, inventory, targets)

    def plan_from(
        self, key: KeyRef, state: KeyState, inventory: Inventory, targets: tuple[str, ...] | None
    ) -> Plan:
        context = PolicyContext(
            state, datetime.now(UTC), self.settings.container_group_policy, self.settings.opt_out_tag
        )
        desired = state.desired.version if state.desired else None
        unique: dict[str, Consumer] = {}
        for consumer in inventory.consumers:  # one step per resource, whatever case its id came in
            unique.setdefault(consumer.resource_id.key, consumer)
        steps = [
            PlanStep.of(c, decide(c, context, self._kind_checks(c.kind)), desired) for c in unique.values()
        ]
        errors = [_error_dict(e.scope, e.kind, e.error) for e in inventory.errors]
        warnings = []
        try:
            steps += self._interrupted_redeploys(key, targets, state, context, set(unique))
        except Exception as exc:  # noqa: BLE001 - an unreadable spec store must not stop the run
            info = classify(exc)
            if info.status == 403:  # e.g. an operator without read on it: nothing to finish that we can see
                warnings.append(
                    f"cannot read {REDEPLOY_CONTAINER} ({info.summary()}): interrupted container "
                    "group redeploys are not checked"
                )
            else:
                errors.append(_error_dict(REDEPLOY_CONTAINER, "containergroup", info))
        warnings += waves.tag_warnings(unique.values())
        if not state.recoverable:
            warnings.append(
                f"vault recovery level is {state.recovery_level}: enable soft delete and purge "
                "protection so a deleted key can be recovered"
            )
        return Plan(key, state, tuple(steps), tuple(errors), inventory.not_consumers, tuple(warnings))

    def _interrupted_redeploys(
        self,
        key: KeyRef,
        targets: tuple[str, ...] | None,
        state: KeyState,
        context: PolicyContext,
        seen: set[str],
    ) -> list[PlanStep]:
        """Container groups a redeploy deleted but did not re-create: finish them first."""
        kind = self.kinds.get("containergroup")
        if not isinstance(kind, ContainerGroups):
            return []
        wanted = {t.lower() for t in targets} if targets is not None else None
        found = []
        for resource_id, saved in kind.pending_redeploys(self.clients, key):
            consumer = saved_consumer(resource_id, saved)
            if (
                consumer is None
                or consumer.resource_id.key in seen
                or (wanted and consumer.resource_id.key not in wanted)
            ):
                continue
            if (decision := opted_out(consumer, context)) is None:
                if state.desired is None:
                    decision = Decision(
                        BLOCKED,
                        state.blocked_reason or "version-disabled",
                        "deleted by an interrupted redeploy, and the key has no usable version "
                        "to re-create it with",
                    )
                else:
                    decision = Decision(
                        UPDATE,
                        "finish-interrupted-redeploy",
                        "deleted by an interrupted redeploy; re-creating it from the saved spec",
                    )
            found.append(PlanStep.of(consumer, decision, state.desired.version if state.desired else None))
        return found

    # -- running ----------------------------------------------------------------------------
    def run(
        self,
        request: RotationRequest,
        *,
        attempt: int = 1,
        progress: ProgressCallback | None = None,
        lease: Lease | None = None,
    ) -> RunResult:
        """Maintain the key, plan, audit and (unless a dry run) apply. Target failures are in the
        result; only an unwritable audit trail raises (AuditUnavailable)."""
        key = request.key
        # Only a lease holder moves the key's chain head: runs without a lease (dry runs) link to it.
        trail = AuditTrail(
            self.audit,
            run_id=request.request_id,
            key=key,
            actor=request.actor,
            advance_key_head=lease is not None,
        )
        result = RunResult(run_id=request.request_id, key_id=key.versionless_id, dry_run=request.dry_run)
        deadline = Deadline(self.settings.time_budget_seconds)
        if self.runs:
            self.runs.started(
                request.request_id,
                key_id=key.versionless_id,
                source=request.source,
                actor=request.actor,
                dry_run=request.dry_run,
                attempt=attempt,
                event_id=request.event_id,
            )
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
            },
        )
        if lease is not None:
            trail.record(
                "lease-taken-over" if lease.taken_over_from else "lease-taken",
                detail={"previousOwner": lease.taken_over_from, "seconds": self.settings.lease_seconds},
            )
        try:
            return self._run(request, trail, result, deadline, progress, lease)
        except AuditUnavailable:
            raise  # no record can be kept: fail loudly, the door lets the message be retried
        except Exception as exc:  # anything unforeseen is recorded and finished, never lost
            info = classify(exc)
            result.error = info
            trail.record(
                "run-failed",
                outcome="failed",
                errorCode=info.code,
                message=info.summary(),
                hint=remediation(info, None),
                detail={"exception": type(exc).__name__},
            )
            log.exception("run %s failed unexpectedly", request.request_id)
            return self._finish(result, trail)

    def _run(
        self,
        request: RotationRequest,
        trail: AuditTrail,
        result: RunResult,
        deadline: Deadline,
        progress: ProgressCallback | None,
        lease: Lease | None,
    ) -> RunResult:
        key = request.key
        forbidden = not_allowed(request, self.settings)
        if forbidden:
            result.error = ErrorInfo(False, False, 403, "NotAllowed", forbidden)
            trail.record("run-failed", outcome="failed", errorCode="NotAllowed", message=forbidden)
            return self._finish(result, trail)
        with ThreadPoolExecutor(max_workers=1) as pool:
            listing = pool.submit(self.inventory, key, request.targets, deadline)
            try:
                state = self.read_state(key, deadline)
                maintenance = KeyMaintenance(
                    self.settings, self.clients.keys(key.vault_url), key, trail, self.retry, lease
                )
                renewal = maintenance.run(request, state, dry_run=request.dry_run)
                if renewal.changed:
                    state = self.read_state(key, deadline)
            except (Unreachable, RenewalFailed) as exc:
                result.error = exc.info
                trail.record(
                    "run-failed",
                    outcome="failed",
                    errorCode=exc.info.code,
                    message=str(exc),
                    hint=remediation(exc.info, "keyvault"),
                )
                listing.cancel()
                return self._finish(result, trail)
            inventory = listing.result()
        result.created_version = renewal.created.version if renewal.created else None
        result.notes.extend(renewal.notes)
        plan = self.plan_from(key, state, inventory, request.targets)
        self._record_plan(plan, trail, result)
        if request.event_type == EXPIRED:
            self._record_expired_event(request, plan, trail)
        trail.flush()  # the plan is durable before anything is written
        if request.dry_run:
            result.steps = [
                _result_of(step, "planned" if step.action == UPDATE else "skipped") for step in plan.steps
            ]
        else:
            result.steps = self._apply(plan, request, trail, deadline, progress, lease, result)
        return self._finish(result, trail)

    def _record_expired_event(self, request: RotationRequest, plan: Plan, trail: AuditTrail) -> None:
        still = [s for s in plan.steps if s.from_version and s.from_version == request.event_version]
        if still:
            trail.record(
                "incident",
                fromVersion=request.event_version,
                reason="consumers-on-expired-version",
                outcome="reported",
                message=f"version {request.event_version} expired while "
                f"{len(still)} consumer(s) still used it",
                detail={"targets": [s.target for s in still][:100]},
            )

    def _record_plan(self, plan: Plan, trail: AuditTrail, result: RunResult) -> None:
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
        trail.record(
            "plan",
            toVersion=plan.desired_version,
            reason=plan.state.blocked_reason,
            detail={
                "summary": _count(s.action for s in plan.steps),
                "currentVersion": plan.state.current_version,
            },
        )
        for step in plan.steps:
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

    def _apply(
        self,
        plan: Plan,
        request: RotationRequest,
        trail: AuditTrail,
        deadline: Deadline,
        progress: ProgressCallback | None,
        lease: Lease | None,
        result: RunResult,
    ) -> list[StepResult]:
        context = ApplyContext(run_id=request.request_id, actor=request.actor)
        desired_key = plan.key.with_version(plan.desired_version) if plan.desired_version else None

        def one(step: PlanStep) -> StepResult:
            if step.action != UPDATE or desired_key is None:
                outcome = _result_of(step, "skipped")
            elif deadline.expired() or (lease is not None and lease.lost):
                # Stop starting new work: out of time, or another run now holds the key.
                code = "LeaseLost" if lease is not None and lease.lost else "TimeBudgetExhausted"
                outcome = _result_of(step, "skipped")
                outcome.error_code = code
                outcome.error = (
                    "another run took over the key's lease"
                    if code == "LeaseLost"
                    else "the run's time budget ended first"
                )
                trail.record(
                    "apply-outcome",
                    target=step.target,
                    outcome="skipped",
                    errorCode=code,
                    fromVersion=step.from_version,
                    toVersion=step.to_version,
                )
            else:
                outcome = self._apply_step(step, desired_key, context, trail, deadline, plan, lease)
            if progress:
                progress(outcome)
            return outcome

        workers = max(
            1, min(self.settings.concurrency, sum(1 for s in plan.steps if s.action == UPDATE) or 1)
        )
        with ThreadPoolExecutor(max_workers=workers) as pool:
            ordered = waves.group(plan.steps)
            if len(ordered) < 2 or desired_key is None:  # one wave: everything at once
                return list(pool.map(one, plan.steps))
            outcome = self._rollout(ordered, plan, trail, deadline, pool, one, request)
        result.halted, result.requeue_after = outcome.halted, outcome.wait_seconds or None
        result.soaking = outcome.soaking
        if outcome.note:
            result.notes.append(outcome.note)
        return [outcome.results.get(s.target) or one(s) for s in plan.steps]

    def _claim_soak(self, ledger: Ledger, key: KeyRef, request: RotationRequest, seconds: int) -> bool:
        now = self.clock()  # due back after the delay, with a minute's grace for a slow queue
        return ledger.claim_soak(key, request.request_id, now, now + timedelta(seconds=seconds + 60))

    def _rollout(
        self,
        ordered: list[waves.Wave],
        plan: Plan,
        trail: AuditTrail,
        deadline: Deadline,
        pool: ThreadPoolExecutor,
        one: Callable[[PlanStep], StepResult],
        request: RotationRequest,
    ) -> waves.RolloutOutcome:
        """Canary waves (rotation/core/waves.py): apply wave by wave, gate on health, soak."""
        desired = plan.desired_version or ""
        key, ledger = plan.key, self.ledger

        def health(consumer: Consumer | None) -> str | None:
            hook = getattr(self.kinds.get(consumer.kind), "healthy", None) if consumer else None
            return waves.health_problem(consumer, desired, hook)

        def read_back(step: PlanStep) -> Consumer | None:
            kind = self.kinds[step.kind]
            try:
                return call(
                    lambda: kind.read(self.clients, step.consumer.resource_id),
                    policy=self.retry,
                    deadline=deadline,
                    what=f"read back {step.target}",
                )
            except Exception:  # noqa: BLE001 - an unreadable canary holds the later waves back
                return None

        def hold(step: PlanStep, code: str, message: str) -> StepResult:
            held = _result_of(step, "skipped")
            held.error_code, held.error = code, message
            trail.record(
                "apply-outcome", target=step.target, outcome="skipped", errorCode=code, message=message
            )
            return held

        def save(done: waves.Progress) -> None:
            if ledger is not None:
                ledger.record_wave(
                    key,
                    desired=done.desired,
                    wave=done.wave,
                    verified_at=done.verified_at,
                    run_id=request.request_id,
                )

        return waves.Rollout(
            ordered,
            desired,
            apply=lambda steps: list(pool.map(one, steps)),
            read_back=lambda steps: list(pool.map(read_back, steps)),
            health=health,
            hold=hold,
            load=lambda: waves.progress_of(ledger.wave_progress(key) if ledger is not None else None),
            save=save,
            now=self.clock,
            record=trail.record,
            soak_minutes=self.settings.wave_soak_minutes,
            recheck_seconds=self.settings.wave_recheck_seconds,
            claim=lambda seconds: ledger is None or self._claim_soak(ledger, key, request, seconds),
        ).run()

    def _apply_step(
        self,
        step: PlanStep,
        desired_key: KeyRef,
        context: ApplyContext,
        trail: AuditTrail,
        deadline: Deadline,
        plan: Plan,
        lease: Lease | None,
    ) -> StepResult:
        kind = self.kinds[step.kind]
        started = time.monotonic()
        attempts = 0
        wrote = False

        def attempt() -> str:
            nonlocal attempts, wrote
            attempts += 1
            if lease is not None and lease.lost:
                raise LeaseLost(f"another run took over {plan.key.versionless_id}; {step.target} left to it")
            # The first attempt trusts the inventory read moments ago; a retry looks again.
            current = step.consumer if attempts == 1 else kind.read(self.clients, step.consumer.resource_id)
            if current is not None and current.version == desired_key.version:
                _check_not_failed(step.target, current)
                return "verified" if wrote else "already-current"
            if current is None and step.kind != "containergroup":
                raise VerificationFailed(
                    f"{step.target} no longer exists or no longer uses a customer-managed key"
                )
            if current is not None and attempts > 1:
                moved_to = plan.state.version(current.version)
                if (
                    moved_to is not None
                    and plan.state.desired
                    and plan.state.is_newer(moved_to, plan.state.desired)
                ):
                    raise VerificationFailed(
                        f"{step.target} moved to the newer version {current.version} meanwhile; "
                        "not downgraded"
                    )
            if current is not None and (current.provisioning_state or "").lower() in _BUSY_STATES:
                raise TransientCondition(f"{step.target} is {current.provisioning_state}")
            trail.record(
                "apply-attempt",
                target=step.target,
                fromVersion=step.from_version,
                toVersion=desired_key.version,
                detail={"attempt": attempts},
            )
            shown = kind.apply(self.clients, current or step.consumer, desired_key, context)
            wrote = True
            # Verify against what the service shows after the write (the poller's final GET or
            # the PATCH answer); read again only when the write gave nothing back.
            after = shown if shown is not None else kind.read(self.clients, step.consumer.resource_id)
            if after is not None and after.version == desired_key.version:
                _check_not_failed(step.target, after)
                return "verified"
            if after is not None and (after.provisioning_state or "").lower() in _BUSY_STATES:
                raise TransientCondition(f"{step.target} is still {after.provisioning_state}")
            raise VerificationFailed(
                f"{step.target} does not show {desired_key.version} after the update "
                f"(shows {after.version if after else 'nothing'})"
            )

        def on_retry(number: int, info: ErrorInfo, sleep: float) -> None:
            trail.record(
                "apply-retry",
                target=step.target,
                outcome="retrying",
                errorCode=info.code,
                message=info.summary(),
                detail={"attempt": number, "sleepSeconds": round(sleep, 3)},
            )

        result = _result_of(step, "failed")
        try:
            outcome = call(
                attempt, policy=self.retry, deadline=deadline, what=f"update {step.target}", on_retry=on_retry
            )
        except Exception as exc:  # noqa: BLE001 - a failed target is reported, never fatal to the run
            info = classify(exc)
            if isinstance(exc, VerificationFailed | LeaseLost):
                info = ErrorInfo(False, False, None, type(exc).__name__, str(exc))
            result.error_code, result.error = info.code, info.summary()
            result.hint = remediation(info, step.kind)
            trail.record(
                "apply-outcome",
                target=step.target,
                outcome="failed",
                fromVersion=step.from_version,
                toVersion=desired_key.version,
                errorCode=info.code,
                message=info.summary(),
                hint=result.hint,
                durationMs=int((time.monotonic() - started) * 1000),
            )
        else:
            # Read back either way: after our write, or because someone else already moved it.
            result.outcome = "verified"
            if outcome == "verified":
                trail.record(
                    "updated",
                    target=step.target,
                    outcome="updated",
                    fromVersion=step.from_version,
                    toVersion=desired_key.version,
                )
            else:
                result.message += " (found already on it when applying)"
            trail.record(
                "verified",
                target=step.target,
                outcome="verified",
                fromVersion=step.from_version,
                toVersion=desired_key.version,
                reason=None if outcome == "verified" else "already-current-at-apply",
                durationMs=int((time.monotonic() - started) * 1000),
            )
        result.duration_ms = int((time.monotonic() - started) * 1000)
        result.attempts = attempts
        return result

    def _finish(self, result: RunResult, trail: AuditTrail) -> RunResult:
        result.finished_at = _iso(datetime.now(UTC))
        trail.record(
            "run-finished",
            outcome=result.status,
            toVersion=result.desired_version,
            detail={"summary": _count(s.outcome for s in result.steps), "exitCode": result.exit_code},
        )
        trail.flush()
        if self.runs:
            summary = {
                "status": result.status,
                "desiredVersion": result.desired_version,
                "createdVersion": result.created_version,
                "exitCode": result.exit_code,
                "summary": _count(s.outcome for s in result.steps),
                "notes": result.notes,
                "discoveryErrors": result.discovery_errors,
                "error": result.error.summary() if result.error else None,
                "halted": result.halted,
            }
            self.runs.finished(result.run_id, summary, [s.to_dict() for s in result.steps])
        outcomes.publish(self.settings.outcome_topic_endpoint, self.clients, result, trail)
        trail.flush()  # the published (or failed) outcome record; nothing when not configured
        return result


def _result_of(step: PlanStep, outcome: str) -> StepResult:
    return StepResult(
        step.target,
        step.kind,
        step.action,
        step.reason,
        step.message,
        step.from_version,
        step.to_version,
        outcome,
        wave=step.wave,
    )
