"""Canary waves in a run: `WaveApply` gives the waves' `Rollout` (rotation/run/waves.py has the
rules) this run's effects: apply a wave in the run's lanes, read a wave back, hold the steps of
waves that may not start, keep the soak's progress in the ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from rotation.azure.kinds import (
    ApplyContext,
    TargetKind,
    read_for_key,
    unhealthy,
)
from rotation.azure.retry import RetryPolicy, call
from rotation.config import Settings
from rotation.model.consumer import Consumer
from rotation.model.results import Plan, PlanStep, StepResult, result_of
from rotation.run import waves
from rotation.run.lanes import Lanes
from rotation.run.stopping import INTERRUPTED, Stop
from rotation.storage.audit import AuditTrail
from rotation.storage.ledger import Ledger

if TYPE_CHECKING:
    from rotation.azure.clients import Clients


class Host(Protocol):
    """What a rollout needs of the applier that runs it."""

    settings: Settings
    clients: Clients
    kinds: Mapping[str, TargetKind]
    retry: RetryPolicy
    ledger: Ledger | None
    clock: Callable[[], datetime]


class WaveApply:
    """This run's effects for the waves' `Rollout`: apply and read back in the run's pool, hold
    the steps of waves that may not start, keep the soak's progress in the ledger."""

    def __init__(
        self,
        applier: Host,
        plan: Plan,
        context: ApplyContext,
        trail: AuditTrail,
        pool: Executor,
        one: Callable[[PlanStep], StepResult],
        lanes: Lanes,
        stop: Stop | None = None,
        cut: Callable[[PlanStep], StepResult] | None = None,
    ) -> None:
        self.applier, self.plan, self.context, self.trail = applier, plan, context, trail
        self.pool, self.one, self.lanes = pool, one, lanes
        self.stop, self.cut = stop, cut  # an interrupted run (run/stopping.py)
        self.desired = plan.desired_version or ""

    def rollout(self, ordered: Sequence[waves.Wave]) -> waves.RolloutOutcome:
        settings = self.applier.settings
        return waves.Rollout(
            ordered,
            self.desired,
            apply=lambda steps: self.lanes.run(self.pool, self.one, steps, self.stop, self.cut),
            read_back=lambda steps: self.lanes.run(self.pool, self.read_back, steps),
            health=self.health,
            hold=self.hold,
            load=self.load,
            save=self.save,
            now=self.applier.clock,
            record=self.trail.record,
            soak_minutes=settings.wave_soak_minutes,
            recheck_seconds=settings.wave_recheck_seconds,
            claim=self.claim,
        ).run()

    def health(self, consumer: Consumer | None) -> str | None:
        kind = self.applier.kinds.get(consumer.kind) if consumer is not None else None
        hook = None if kind is None else (lambda shown: unhealthy(kind, shown))
        return waves.health_problem(consumer, self.desired, hook)

    def read_back(self, step: PlanStep) -> Consumer | None:
        kind, applier = self.applier.kinds[step.kind], self.applier
        try:
            return call(
                lambda: read_for_key(kind, applier.clients, step.consumer.resource_id, step.consumer.key),
                policy=applier.retry,
                deadline=self.context.deadline,
                what=f"read back {step.target}",
            )
        except Exception:  # noqa: BLE001 - an unreadable canary holds the later waves back
            return None

    def hold(self, step: PlanStep, code: str, message: str) -> StepResult:
        if self.stop is not None and self.stop.asked:  # not held by a wave: the run was interrupted
            code, message = INTERRUPTED, "the run was interrupted before this target's write started"
        held = result_of(step, "skipped")
        held.error_code, held.error = code, message
        self.trail.record(
            "apply-outcome", target=step.target, outcome="skipped", errorCode=code, message=message
        )
        return held

    def load(self) -> waves.Progress | None:
        ledger = self.applier.ledger
        return waves.progress_of(ledger.wave_progress(self.plan.key) if ledger is not None else None)

    def save(self, done: waves.Progress) -> None:
        if self.applier.ledger is not None:
            self.applier.ledger.record_wave(
                self.plan.key,
                desired=done.desired,
                wave=done.wave,
                verified_at=done.verified_at,
                run_id=self.context.run_id,
            )

    def claim(self, seconds: int) -> bool:
        """One request carries a soak: it is due back after the delay, with a minute's grace
        for a slow queue; False when another live request already carries it."""
        ledger = self.applier.ledger
        if ledger is None:
            return True
        now = self.applier.clock()
        return ledger.claim_soak(
            self.plan.key, self.context.run_id, now, now + timedelta(seconds=seconds + 60)
        )
