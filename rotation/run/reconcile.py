"""reconcile(key): compare every consumer of a key with the version it should be on, and close
the gap. Every door (event, HTTP, replay, sweep, CLI) ends here, and the desired state is read
from Key Vault and ARM each time, so duplicate, late, out-of-order and lost events all converge.

The run is a short story told into the audit trail: gather the reads (run/gather.py), keep
the key maintained (run/renewal.py), plan with values only (run/planner.py), record the plan
before any write, apply the `update` steps (run/apply.py), finish. Result types and status
rules are in model/results.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rotation import telemetry, waits
from rotation.azure import budget
from rotation.azure.discovery import Inventory
from rotation.azure.kinds import ApplyContext, TargetKind, all_kinds, checks_of, forbids_key_expiry
from rotation.azure.retry import Deadline, RetryPolicy, classify, remediation
from rotation.azure.vault import KEY_VAULT_HINTS
from rotation.config import Settings
from rotation.model.decisions import UPDATE, PolicyContext
from rotation.model.errors import ErrorInfo
from rotation.model.ids import KeyRef
from rotation.model.keystate import KeyState
from rotation.model.request import RotationRequest
from rotation.model.results import Plan, RunResult, StepResult, count, result_of
from rotation.model.times import utc_now
from rotation.run import outcomes
from rotation.run.allowed import not_allowed
from rotation.run.apply import Applier, ProgressCallback
from rotation.run.gather import Gathered, Gatherer, Maintain, Unreachable
from rotation.run.narrate import record_findings, record_finished, record_interrupted, record_started
from rotation.run.planner import make_plan
from rotation.run.renewal import KeyMaintenance, RenewalFailed
from rotation.run.reverts import RevertWatch
from rotation.run.sharding import MAX_SHARD_TARGETS, wants_shards
from rotation.run.shardrun import ShardStores, hand_out
from rotation.run.stopping import Stop
from rotation.run.unfinished import account_for_unfinished
from rotation.storage.audit import AuditStore, AuditTrail, AuditUnavailable
from rotation.storage.ledger import Lease, Ledger
from rotation.storage.runs import RunStore
from rotation.storage.steprows import StepRowWriter
from rotation.storage.written import WrittenStore

if TYPE_CHECKING:
    from rotation.azure.clients import Clients

log = logging.getLogger("rotation.reconcile")
# Inside a door's budget (the worker's), the run's own budget ends this much sooner (at most a
# quarter of what is left), so the run can still be closed and recorded when its work is cut.
CLOSE_RESERVE_SECONDS = 30.0
_BUDGET_CODES = ("TimeBudgetExhausted", "BudgetExhausted")


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
        sleep: Callable[[float], None] = waits.sleep,  # the waits between retries of a call
        monotonic: Callable[[], float] = time.monotonic,
        shards: ShardStores | None = None,  # where a large run hands out its shards (None: never)
    ) -> None:
        self.settings = settings
        self.shards = shards
        self.monotonic = monotonic  # the run's budget clock (tests inject one)
        self.clients = clients
        self.audit = audit
        self.runs = runs
        self.kinds = {k.kind: k for k in (kinds or all_kinds(settings))}
        self.retry = RetryPolicy(
            settings.retry_initial_seconds,
            settings.retry_max_seconds,
            settings.retry_attempts,
            sleep,
            settings.max_retry_after_seconds,
        )
        self.gatherer = Gatherer(settings, clients, self.kinds, self.retry)
        # The ledger keeps canary-wave progress between attempts; the clock times the soak.
        self.applier = Applier(settings, clients, self.kinds, self.retry, ledger=ledger, clock=clock)
        # What this system wrote to each consumer, to tell when a deployment put one back.
        self.reverts = RevertWatch(WrittenStore(ledger.table) if ledger else None, clients, self.retry)

    # -- planning -----------------------------------------------------------------------------
    def read_state(self, key: KeyRef, deadline: Deadline | None = None) -> KeyState:
        return self.gatherer.read_state(key, deadline)

    def inventory(self, key: KeyRef, targets: tuple[str, ...] | None, deadline: Deadline | None) -> Inventory:
        """The key's consumers from ARM (or just the requested targets)."""
        return self.gatherer.inventory(key, targets, deadline)

    def plan(
        self, key: KeyRef, targets: tuple[str, ...] | None = None, deadline: Deadline | None = None
    ) -> Plan:
        """Read-only: what a run would do now. Raises Unreachable when Key Vault cannot be read."""
        return self.preview(key, targets, deadline)[0]

    def preview(
        self, key: KeyRef, targets: tuple[str, ...] | None = None, deadline: Deadline | None = None
    ) -> tuple[Plan, Inventory]:
        """`plan`, and the consumers it found: a run started moments later may take them (`listed`)."""
        key = key.versionless()
        gathered = self.gatherer.gather(key, targets, deadline)
        return self.reverts.review(self._plan(key, gathered), deadline)[0], gathered.inventory

    def plan_from(
        self, key: KeyRef, state: KeyState, inventory: Inventory, targets: tuple[str, ...] | None
    ) -> Plan:
        """A plan from reads already made (the sweep lists once for every key)."""
        return self._plan(key, self.gatherer.with_pending(key, state, inventory, targets))

    def _plan(self, key: KeyRef, gathered: Gathered) -> Plan:
        context = PolicyContext(
            gathered.state,
            datetime.now(UTC),
            self.settings.opt_out_tag,
            frozenset(self.settings.subscriptions),
        )
        return make_plan(key, gathered, context, {name: checks_of(k) for name, k in self.kinds.items()})

    # -- running ------------------------------------------------------------------------------
    def run(
        self,
        request: RotationRequest,
        *,
        attempt: int = 1,
        progress: ProgressCallback | None = None,
        lease: Lease | None = None,
        stop: Stop | None = None,
        listed: Inventory | None = None,
    ) -> RunResult:
        """Maintain the key, plan, audit and (unless a dry run) apply. Target failures are in the
        result; only an unwritable audit trail raises (AuditUnavailable). `stop` (a signal) or
        the end of the time budget closes the run as `interrupted`, its writes recorded.
        `listed`: a preview's consumers of the key, not listed again (each write reads its
        target through ARM first, as for Resource Graph's)."""
        key = request.key
        # Only a lease holder moves the key's chain head: runs without a lease (dry runs) link to
        # it, and so do shards (they run side by side under their parent's lease).
        trail = AuditTrail.for_request(
            self.audit, request, advance_key_head=lease is not None and request.shard is None
        )
        result = RunResult(run_id=request.request_id, key_id=key.versionless_id, dry_run=request.dry_run)
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
        record_started(trail, request, attempt, lease, self.settings.lease_seconds)
        with telemetry.span(
            "rotation.run",
            run_id=request.request_id,
            key_id=key.versionless_id,
            source=request.source,
            dry_run=request.dry_run,
            attempt=attempt,
        ) as span:
            started = time.monotonic()
            deadline = Deadline(self._budget_seconds(), self.monotonic)
            try:
                # Key Vault and ARM waits end inside the run's budget (storage is left to close it)
                with budget.run_budget(deadline.remaining(), clock=self.monotonic):
                    result = self._run(request, trail, result, progress, lease, deadline, stop, listed)
            except AuditUnavailable:
                raise  # no record can be kept: fail loudly, the door lets the message be retried
            except Exception as exc:  # anything unforeseen is recorded and finished, never lost
                info = classify(exc)
                if _budget_ended(info, deadline):  # cut before any step: nothing was written
                    result.interrupted = "TimeBudgetExhausted"
                    result = self._interrupt(result, trail, info.summary())
                else:
                    log.exception("run %s failed unexpectedly", request.request_id)
                    result = self._fail(
                        result, trail, info, info.summary(), remediation(info), type(exc).__name__
                    )
            span.set(status=result.status, desired_version=result.desired_version)
            telemetry.run_finished(result.status, time.monotonic() - started, request.source)
            return result

    def _run(
        self,
        request: RotationRequest,
        trail: AuditTrail,
        result: RunResult,
        progress: ProgressCallback | None,
        lease: Lease | None,
        deadline: Deadline,
        stop: Stop | None,
        listed: Inventory | None = None,
    ) -> RunResult:
        if forbidden := not_allowed(request, self.settings):
            return self._fail(result, trail, ErrorInfo(False, False, 403, "NotAllowed", forbidden), forbidden)
        maintain = self._maintenance(request, trail, result, deadline, lease)
        try:
            gathered = self.gatherer.gather(request.key, request.targets, deadline, maintain, listed)
        except (Unreachable, RenewalFailed) as exc:
            if _budget_ended(exc.info, deadline):
                result.interrupted = "TimeBudgetExhausted"
                return self._interrupt(result, trail, str(exc))
            return self._fail(result, trail, exc.info, str(exc), remediation(exc.info, KEY_VAULT_HINTS))
        plan, reverted = self.reverts.review(self._plan(request.key, gathered), deadline)
        record_findings(request, plan, trail, result)  # the plan is durable before anything is written
        if lease is not None and self.runs is not None and lease.taken_over_from:
            account_for_unfinished(self.audit, self.runs, lease.taken_over_from, plan, trail, result)
        if request.dry_run:
            result.steps = [result_of(s, "planned" if s.action == UPDATE else "skipped") for s in plan.steps]
            return self._finish(result, trail)
        self.reverts.record(request.key, reverted, trail, plan.desired_version)
        if self._shards_wanted(request, plan, lease):
            assert lease is not None
            return self._hand_out(request, plan, trail, result, lease)
        context = ApplyContext(request.request_id, request.actor, deadline)
        writer = (
            StepRowWriter(self.runs, result.run_id, [s.target for s in plan.steps]) if self.runs else None
        )
        verified = self.reverts.as_they_go(request.key, request.request_id)

        def finished_step(step: StepResult) -> None:
            if writer is not None:
                writer.add(step.to_dict())  # the run's rows are written as it goes
            if verified is not None and step.outcome == "verified" and step.to_version:
                verified.add(step.target, step.to_version)  # and the versions it verified
            if progress is not None:
                progress(step)

        try:
            applied = self.applier.apply(plan, context, trail, finished_step, lease, stop)
        finally:
            written = writer.close() if writer is not None else None
            stored = verified.close() if verified is not None else set()
        self.reverts.remember(request.key, applied.steps, request.request_id, stored)
        result.steps, result.halted, result.soaking = applied.steps, applied.halted, applied.soaking
        result.requeue_after = applied.requeue_after
        result.notes.extend(applied.notes)
        result.interrupted = _why_interrupted(result, stop)
        if result.interrupted is not None:
            return self._interrupt(result, trail, None, written)
        return self._finish(result, trail, written)

    def _shards_wanted(self, request: RotationRequest, plan: Plan, lease: Lease | None) -> bool:
        return (
            self.shards is not None
            and lease is not None
            and request.shard is None
            and wants_shards(plan.steps, self.settings.shard_threshold)
        )

    def _hand_out(
        self, request: RotationRequest, plan: Plan, trail: AuditTrail, result: RunResult, lease: Lease
    ) -> RunResult:
        """Too many targets for one instance: the steps that need no write are this run's; the
        `update` steps go to shards on the queue, and the last shard to end closes the run."""
        assert self.shards is not None
        result.steps = [result_of(s, "skipped") for s in plan.steps if s.action != UPDATE]
        own_status = result.status
        if self.runs:  # before the shards exist: the closing shard's record comes after this one
            self.runs.finished(
                result.run_id,
                {
                    "status": "sharded",
                    "ownStatus": own_status,
                    "desiredVersion": result.desired_version,
                    "summary": count(s.outcome for s in result.steps),
                    "notes": result.notes,
                },
                [s.to_dict() for s in result.steps],
            )
        size = min(self.settings.shard_threshold, MAX_SHARD_TARGETS)
        result.shards = hand_out(self.shards, request, plan, trail, lease, size)
        result.notes.append(f"sharded: {result.shards} shard(s) queued on rotation-requests")
        return result

    def _budget_seconds(self) -> float:
        """The run's budget: the setting, or less when the door's own budget ends sooner."""
        seconds = self.settings.time_budget_seconds
        left = budget.remaining()
        if left is not None:
            seconds = min(seconds, left - min(CLOSE_RESERVE_SECONDS, left / 4))
        return max(0.0, seconds)

    def _maintenance(
        self,
        request: RotationRequest,
        trail: AuditTrail,
        result: RunResult,
        deadline: Deadline,
        lease: Lease | None,
    ) -> Maintain:
        """Near-expiry renewal and the expiry step, between reading the key and planning (by
        the run that holds the key: a shard's parent did it)."""
        key = request.key
        if request.shard is not None:
            return lambda state, inventory: state

        def maintain(state: KeyState, inventory: Inventory) -> KeyState:
            client = self.clients.keys(key.vault_url)
            maintenance = KeyMaintenance(self.settings, client, key, trail, self.retry, lease, deadline)
            maintenance.no_expiry = tuple(
                c.target for c in inventory.consumers if forbids_key_expiry(self.kinds.get(c.kind))
            )
            renewal = maintenance.run(request, state, dry_run=request.dry_run)
            result.created_version = renewal.created.version if renewal.created else None
            result.notes.extend(renewal.notes)
            return self.read_state(key, deadline) if renewal.changed else state

        return maintain

    # -- finishing ----------------------------------------------------------------------------
    def _fail(
        self,
        result: RunResult,
        trail: AuditTrail,
        info: ErrorInfo,
        message: str,
        hint: str | None = None,
        exception: str | None = None,
    ) -> RunResult:
        """The run could not plan: record why, then finish it like any other."""
        result.error = info
        trail.record(
            "run-failed",
            outcome="failed",
            errorCode=info.code,
            message=message,
            hint=hint,
            detail={"exception": exception} if exception else None,
        )
        return self._finish(result, trail)

    def _interrupt(
        self,
        result: RunResult,
        trail: AuditTrail,
        message: str | None,
        written: Mapping[str, dict[str, Any]] | None = None,
    ) -> RunResult:
        """Stopped early by a signal or the budget: say so and where, then finish as usual."""
        record_interrupted(trail, result, message)
        note = f"interrupted ({result.interrupted})"
        if message:
            note += f": {message}"
        result.notes.append(note)
        return self._finish(result, trail, written)

    def _finish(
        self, result: RunResult, trail: AuditTrail, written: Mapping[str, dict[str, Any]] | None = None
    ) -> RunResult:
        result.finished_at = utc_now()
        for step in result.steps:
            telemetry.step_finished(step.kind, step.action, step.outcome)
        record_finished(trail, result)
        if self.runs:
            summary = {
                "status": result.status,
                "desiredVersion": result.desired_version,
                "createdVersion": result.created_version,
                "exitCode": result.exit_code,
                "summary": count(s.outcome for s in result.steps),
                "notes": result.notes,
                "discoveryErrors": result.discovery_errors,
                "error": result.error.summary() if result.error else None,
                "halted": result.halted,
                "interrupted": result.interruption(),
            }
            self.runs.finished(result.run_id, summary, [s.to_dict() for s in result.steps], written)
        outcomes.publish(self.settings.outcome_topic_endpoint, self.clients, result, trail, self.retry)
        trail.flush()  # the published (or failed) outcome record; nothing when not configured
        return result


def _why_interrupted(result: RunResult, stop: Stop | None) -> str | None:
    """A signal, or the budget that kept a step from starting or a scope from being listed."""
    if stop is not None and stop.asked:
        return stop.reason
    if any(s.error_code == "TimeBudgetExhausted" for s in result.steps) or any(
        e.get("code") in _BUDGET_CODES for e in result.discovery_errors
    ):
        return "TimeBudgetExhausted"
    return None


def _budget_ended(info: ErrorInfo, deadline: Deadline) -> bool:
    """The failure is the run's (or the door's) budget running out, not the service failing."""
    return info.code in _BUDGET_CODES or (deadline.expired() and info.code in (None, "ConnectionError"))
