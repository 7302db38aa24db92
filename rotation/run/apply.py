"""Applying a plan: the `update` steps in a bounded pool. Per target, every attempt asks in
order: is the work already done? (the resource already shows the desired version) → may it
be written? (our lease, not busy, not moved past the desired version meanwhile) → write
(the kind's minimal body) → verify (the kind's read-back). A retry starts again from the top,
so it is always safe; a failed target stays on its old version and does not stop the others.

With canary waves (the cmk-rotation-wave tag, rotation/run/waves.py has the rules) the
update steps go wave by wave: `WaveApply` (rotation/run/rollout.py) gives the waves' `Rollout` this run's effects (the
pool, read-back, held steps, progress in the ledger) and the run's result says whether the
rollout halted or soaks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rotation import telemetry
from rotation.azure.kinds import (
    ApplyContext,
    TargetKind,
    has_failed,
    hints_of,
    is_busy,
    read_for_key,
    recreates_missing,
    verified,
)
from rotation.azure.retry import Deadline, RetryPolicy, call, classify, remediation
from rotation.config import Settings, parallel_targets
from rotation.model.consumer import Consumer
from rotation.model.decisions import UPDATE
from rotation.model.errors import ErrorInfo, RotationError, TransientCondition
from rotation.model.ids import KeyRef
from rotation.model.results import IN_FLIGHT, Plan, PlanStep, StepResult, result_of
from rotation.run import waves
from rotation.run.lanes import Lanes
from rotation.run.rollout import WaveApply
from rotation.run.stopping import INTERRUPTED, Stop
from rotation.storage.audit import AuditTrail
from rotation.storage.ledger import Lease, Ledger

if TYPE_CHECKING:
    from rotation.azure.clients import Clients

ProgressCallback = Callable[[StepResult], None]
log = logging.getLogger("rotation.apply")


class VerificationFailed(RotationError):
    """The write was accepted but the resource does not show the new version."""


class LeaseLost(RotationError):
    """Another run took over the key's lease: stop touching its consumers."""


class SubscriptionNotAllowed(RotationError):
    """A write aimed at a resource outside ROTATION_SUBSCRIPTIONS (refused before it is sent)."""


class Stopped(RotationError):
    """The run was asked to stop (a signal) before this target's write started."""

    code = INTERRUPTED


def _check_not_failed(target: str, consumer: Consumer) -> None:
    """A resource that shows the new version but whose provisioning failed is not verified."""
    if has_failed(consumer):
        raise VerificationFailed(
            f"{target} shows the new version but its provisioning state is {consumer.provisioning_state}"
        )


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


@dataclass
class Applied:
    """The steps' results, and where a canary-wave rollout stopped (if it did)."""

    steps: list[StepResult]
    halted: str | None = None  # "halted after wave n: ..."
    requeue_after: int | None = None  # soaking: the request comes back after this many seconds
    soaking: bool = False
    notes: list[str] = field(default_factory=list)


class Applier:
    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        kinds: Mapping[str, TargetKind],
        retry: RetryPolicy,
        *,
        ledger: Ledger | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings, self.clients, self.kinds, self.retry = settings, clients, kinds, retry
        self.ledger = ledger  # wave progress between attempts (canary waves with a soak)
        self.clock = clock or (lambda: datetime.now(UTC))

    def apply(
        self,
        plan: Plan,
        context: ApplyContext,
        trail: AuditTrail,
        progress: ProgressCallback | None,
        lease: Lease | None,
        stop: Stop | None = None,
    ) -> Applied:
        """`stop`: a signal asks the run to stop (run/stopping.py); the steps under way past
        its grace are answered by `cut` (recorded as in flight or not started)."""
        desired_key = plan.key.with_version(plan.desired_version) if plan.desired_version else None
        steps_of = _Steps(self, plan, desired_key, context, trail, progress, lease, stop)
        one, cut = steps_of.one, steps_of.cut
        headroom = self.clients.pacer.headroom if self.settings.lanes_follow_arm else None
        lanes = Lanes(self.settings.concurrency, headroom, cap=parallel_targets(self.settings.execution))
        workers = lanes.workers([s for s in plan.steps if s.action == UPDATE])
        pool: Executor
        if self.settings.execution == "hub":
            from rotation.hub import Hub  # greenlet and libcurl's multi: loaded only for a run on the hub

            pool = Hub()
        else:
            pool = ThreadPoolExecutor(max_workers=workers)
        try:
            ordered = waves.group(plan.steps)
            if len(ordered) < 2 or desired_key is None:  # one wave: everything at once
                return Applied(lanes.run(pool, one, plan.steps, stop, cut))
            rollout = WaveApply(self, plan, context, trail, pool, one, lanes, stop, cut)
            outcome = rollout.rollout(ordered)
        finally:
            # A write abandoned after a stop's grace keeps its thread: the run does not wait for it.
            pool.shutdown(wait=stop is None or not stop.asked, cancel_futures=True)
        steps = [outcome.results.get(s.target) or one(s) for s in plan.steps]
        notes = [outcome.note] if outcome.note else []
        return Applied(steps, outcome.halted, outcome.wait_seconds or None, outcome.soaking, notes)


class _Steps:
    """One run's step function (`one`) and its answer for a step still under way after a stop's
    grace (`cut`), which agree under a lock on which of them records each step."""

    def __init__(
        self,
        applier: Applier,
        plan: Plan,
        desired_key: KeyRef | None,
        context: ApplyContext,
        trail: AuditTrail,
        progress: ProgressCallback | None,
        lease: Lease | None,
        stop: Stop | None,
    ) -> None:
        self.applier, self.plan, self.desired_key, self.context = applier, plan, desired_key, context
        self.trail, self.progress, self.lease, self.stop = trail, progress, lease, stop
        self.under_way: dict[str, TargetApply] = {}
        self.answered: set[str] = set()  # steps `cut` answered before their thread started them
        self.lock = threading.Lock()

    def one(self, step: PlanStep) -> StepResult:
        if step.action != UPDATE or self.desired_key is None:
            outcome = result_of(step, "skipped")
        else:
            with self.lock:  # against `cut`: each step is answered, and recorded, once
                if step.target in self.answered:  # `cut` answered it; the run moved on
                    return _not_started(step, INTERRUPTED, None)
                code = _stop_code(self.context.deadline, self.lease, self.stop)
                target = None if code else self._target(step, self.desired_key)
                if target is None:
                    self.answered.add(step.target)
                else:
                    self.under_way[step.target] = target
            if target is None:
                outcome = _not_started(step, code or INTERRUPTED, self.trail)
            else:
                outcome = target.run()
                if target.abandoned:  # answered by `cut` already, and the run has moved on
                    return outcome
        if self.progress:
            self.progress(outcome)
        return outcome

    def _target(self, step: PlanStep, desired_key: KeyRef) -> TargetApply:
        return TargetApply(
            self.applier, step, desired_key, self.plan, self.context, self.trail, self.lease, self.stop
        )

    def cut(self, step: PlanStep) -> StepResult:
        with self.lock:
            target = self.under_way.get(step.target)
            recorded = target is None and step.target in self.answered  # by `one`, just now
            self.answered.add(step.target)
        if target is not None:
            outcome = target.abandon()
        else:
            outcome = _not_started(step, INTERRUPTED, None if recorded else self.trail)
        if self.progress and not recorded:
            self.progress(outcome)
        return outcome


def _stop_code(deadline: Deadline | None, lease: Lease | None, stop: Stop | None = None) -> str | None:
    """Why no new work may start: another run now holds the key, a signal, or the time is up."""
    if lease is not None and lease.lost:
        return "LeaseLost"
    if stop is not None and stop.asked:
        return INTERRUPTED
    if deadline is not None and deadline.expired():
        return "TimeBudgetExhausted"
    return None


_NOT_STARTED = {
    "LeaseLost": "another run took over the key's lease",
    INTERRUPTED: "the run was interrupted before this target's write started",
    "TimeBudgetExhausted": "the run's time budget ended first",
}


def _not_started(
    step: PlanStep, code: str, trail: AuditTrail | None, message: str | None = None
) -> StepResult:
    """A step that no write was started for; recorded unless `trail` is None (recorded already)."""
    outcome = result_of(step, "skipped")
    outcome.error_code = code
    outcome.error = message or _NOT_STARTED.get(code, code)
    if trail is None:
        return outcome
    trail.record(
        "apply-outcome",
        target=step.target,
        outcome="skipped",
        errorCode=code,
        message=outcome.error,
        fromVersion=step.from_version,
        toVersion=step.to_version,
    )
    return outcome


class TargetApply:
    """One target's update: attempts under the retry policy, then its audited outcome."""

    def __init__(
        self,
        applier: Applier,
        step: PlanStep,
        to_key: KeyRef,
        plan: Plan,
        context: ApplyContext,
        trail: AuditTrail,
        lease: Lease | None,
        stop: Stop | None = None,
    ) -> None:
        self.clients, self.retry = applier.clients, applier.retry
        self.subscriptions = applier.settings.subscriptions
        self.kind = applier.kinds[step.kind]
        self.step, self.to_key, self.plan, self.context = step, to_key, plan, context
        self.trail, self.lease, self.stop = trail, lease, stop
        self.attempts = 0
        self.writes = 0  # attempts that got as far as the write
        self.wrote = False
        # A stopped run answers for this target once its grace ends (`abandon`): from then on
        # no write starts and this thread records nothing (its run is closed).
        self._abandoned = False
        self._lock = threading.Lock()

    def run(self) -> StepResult:
        step = self.step
        with telemetry.span(
            "rotation.step",
            run_id=self.context.run_id,
            target=step.target,
            kind=step.kind,
            action=step.action,
            from_version=step.from_version,
            to_version=self.to_key.version,
        ) as span:
            result = self._run()
            span.set(outcome=result.outcome, error_code=result.error_code, attempts=result.attempts)
            return result

    def _run(self) -> StepResult:
        started = time.monotonic()
        result = result_of(self.step, "failed")
        try:
            outcome = call(
                self.attempt,
                policy=self.retry,
                deadline=self.context.deadline,
                what=f"update {self.step.target}",
                on_retry=self._record_retry,
            )
        except Stopped as exc:
            return self._record_stopped(exc.info.message)
        except Exception as exc:  # noqa: BLE001 - a failed target is reported, never fatal to the run
            if classify(exc).code == "BudgetExhausted":  # the run's time ended, not the target
                return self._record_stopped(None, "TimeBudgetExhausted")
            with self._lock:
                if not self._abandoned:
                    self._record_failure(result, exc, started)
        else:
            with self._lock:
                if not self._abandoned:
                    self._record_success(result, outcome, started)
        if self._abandoned:  # the run closed without it: the next run reads the target back
            log.warning("%s ended after its run %s closed: %s", self.step.target, self.context.run_id, result)
        result.duration_ms = _ms_since(started)
        result.attempts = self.attempts
        return result

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def abandon(self) -> StepResult:
        """The stopped run's answer for this target while its attempt is still under way: in
        flight once a write was sent (its outcome unknown), else not started. No write starts
        after this, and this thread records nothing more."""
        with self._lock:
            self._abandoned = True
            return self._stopped_answer()

    def _record_stopped(self, message: str | None, code: str = INTERRUPTED) -> StepResult:
        """A stop or the budget's end kept this target's next write from starting or cut the one
        under way (an earlier attempt may have written)."""
        with self._lock:
            if self._abandoned:  # `abandon` answered (and recorded) for it already
                return result_of(self.step, "skipped")
            return self._stopped_answer(message, code)

    def _stopped_answer(self, message: str | None = None, code: str = INTERRUPTED) -> StepResult:
        if self.writes == 0:
            return _not_started(self.step, code, self.trail, message)
        result = result_of(self.step, IN_FLIGHT)
        result.error_code, result.attempts = code, self.attempts
        result.error = "a write was under way when the run stopped; the next run reads it back"
        self.trail.record(
            "apply-outcome",
            target=self.step.target,
            outcome=IN_FLIGHT,
            errorCode=code,
            message=result.error,
            fromVersion=self.step.from_version,
            toVersion=self.to_key.version,
            detail=self._attempts_detail(),
        )
        return result

    # -- one attempt: done? → guard → write → verify --------------------------------------------
    def attempt(self) -> str:
        self.attempts += 1
        if self.lease is not None and self.lease.lost:
            raise LeaseLost(
                f"another run took over {self.plan.key.versionless_id}; {self.step.target} left to it"
            )
        # The first attempt trusts an ARM list read moments ago; a retry, or a consumer found in
        # Resource Graph (which lags ARM), looks again.
        fresh = self.attempts == 1 and not self.step.consumer.lagging
        current = self.step.consumer if fresh else self._read()
        if current is not None and verified(self.kind, current, self.to_key):
            _check_not_failed(self.step.target, current)
            return "verified" if self.wrote else "already-current"
        if current is None and not recreates_missing(self.kind):
            raise VerificationFailed(
                f"{self.step.target} no longer exists or no longer uses a customer-managed key"
            )
        self._guard(current)
        return self._verify(self._write(current))

    def _read(self) -> Consumer | None:
        # the consumer of *this* key: a resource may hold several (an Event Hubs namespace)
        return read_for_key(self.kind, self.clients, self.step.consumer.resource_id, self.step.consumer.key)

    def _guard(self, current: Consumer | None) -> None:
        if current is None:
            return
        state = self.plan.state
        moved_to = state.version(current.version) if self.attempts > 1 else None
        if moved_to is not None and state.desired and state.is_newer(moved_to, state.desired):
            raise VerificationFailed(
                f"{self.step.target} moved to the newer version {current.version} meanwhile; not downgraded"
            )
        if is_busy(current):
            raise TransientCondition(f"{self.step.target} is {current.provisioning_state}")

    def _write(self, current: Consumer | None) -> Consumer | None:
        # No record of its own: the outcome record says how many attempts wrote (one record
        # per target keeps a 10,000-target run's trail inside a partition's write rate).
        target = current or self.step.consumer
        self._check_subscription(target)
        with self._lock:  # against `abandon`: a write starts only while the run still waits for it
            if self._abandoned or (self.stop is not None and self.stop.asked):
                raise Stopped(f"the run was interrupted before {self.step.target} was written")
            self.writes += 1
        shown = self.kind.apply(self.clients, target, self.to_key, self.context)
        self.wrote = True
        # Verify against what the service shows after the write (the poller's final GET or
        # the PATCH answer); read again only when the write gave nothing back.
        return shown if shown is not None else self._read()

    def _check_subscription(self, target: Consumer) -> None:
        """Defence in depth: the plan already blocks such a consumer; the write checks again."""
        subscription = target.resource_id.subscription.lower()
        if subscription not in self.subscriptions:
            raise SubscriptionNotAllowed(
                f"{target.target} is in subscription {subscription}, which is not in "
                "ROTATION_SUBSCRIPTIONS: not written"
            )

    def _verify(self, after: Consumer | None) -> str:
        if after is not None and verified(self.kind, after, self.to_key):
            _check_not_failed(self.step.target, after)
            return "verified"
        if after is not None and is_busy(after):
            raise TransientCondition(f"{self.step.target} is still {after.provisioning_state}")
        raise VerificationFailed(
            f"{self.step.target} does not show {self.to_key.version} after the update "
            f"(shows {after.version if after else 'nothing'})"
        )

    # -- the audit trail ----------------------------------------------------------------------
    def _record_retry(self, number: int, info: ErrorInfo, sleep: float) -> None:
        self.trail.record(
            "apply-retry",
            target=self.step.target,
            outcome="retrying",
            errorCode=info.code,
            message=info.summary(),
            detail={"attempt": number, "sleepSeconds": round(sleep, 3)},
        )

    def _record_failure(self, result: StepResult, exc: Exception, started: float) -> None:
        info = classify(exc)
        result.error_code, result.error = info.code, info.summary()
        told = exc.remediation if isinstance(exc, RotationError) else None
        result.hint = told or remediation(info, hints_of(self.kind))
        self.trail.record(
            "apply-outcome",
            target=self.step.target,
            outcome="failed",
            fromVersion=self.step.from_version,
            toVersion=self.to_key.version,
            errorCode=info.code,
            message=info.summary(),
            hint=result.hint,
            durationMs=_ms_since(started),
            detail=self._attempts_detail(),
        )

    def _record_success(self, result: StepResult, outcome: str, started: float) -> None:
        # Read back either way: after our write, or because someone else already moved it.
        result.outcome = "verified"
        if outcome != "verified":
            result.message += " (found already on it when applying)"
        self.trail.record(
            "verified",
            target=self.step.target,
            outcome="verified",
            reason=None if outcome == "verified" else "already-current-at-apply",
            durationMs=_ms_since(started),
            fromVersion=self.step.from_version,
            toVersion=self.to_key.version,
            detail=self._attempts_detail(),
        )

    def _attempts_detail(self) -> dict[str, Any]:
        """What the one outcome record tells of the way there: the plan's reason, the attempts,
        how many of them wrote."""
        return {"planReason": self.step.reason, "attempts": self.attempts, "writes": self.writes}
