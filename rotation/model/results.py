"""What a run produces, as values: the plan (one step per consumer), each step's result, the
run's result, and the status rules of DESIGN.md section 7 (when a run converged, needs a
person or failed, and the CLI exit code that says so)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rotation.model.consumer import Consumer
from rotation.model.decisions import NEEDS_PERSON, UPDATE, Decision
from rotation.model.errors import ErrorInfo
from rotation.model.ids import KeyRef
from rotation.model.keystate import KeyState
from rotation.model.times import utc_now

# Attribute → wire name, in the order the JSON shows them (CLI, HTTP, run records).
_STEP_FIELDS = {
    "target": "target",
    "kind": "kind",
    "action": "action",
    "reason": "reason",
    "message": "message",
    "from_version": "fromVersion",
    "to_version": "toVersion",
    "wave": "wave",
}
_RESULT_FIELDS = {
    **_STEP_FIELDS,
    "outcome": "outcome",
    "error_code": "errorCode",
    "error": "error",
    "hint": "hint",
    "duration_ms": "durationMs",
    "attempts": "attempts",
}
LAST_WAVE = "last"  # untagged resources (rotation/run/waves.py has the wave rules)
# A step whose write was sent but not confirmed when the run was interrupted: the next run reads
# it back (and records it when it finds the consumer moved).
IN_FLIGHT = "in-flight"
INTERRUPTED_EXIT = 130  # the CLI's code for an interrupted run (it did not converge, nothing failed)


def _wire(value: object, names: dict[str, str]) -> dict[str, Any]:
    return {wire: getattr(value, attribute) for attribute, wire in names.items()}


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
    wave: str = LAST_WAVE  # canary wave label from the cmk-rotation-wave tag

    @classmethod
    def of(
        cls, consumer: Consumer, decision: Decision, desired: str | None, wave: str = LAST_WAVE
    ) -> PlanStep:
        return cls(
            consumer.target,
            consumer.kind,
            decision.action,
            decision.reason,
            decision.message,
            consumer.version,
            desired,
            consumer,
            wave,
        )

    def to_dict(self) -> dict[str, Any]:
        return _wire(self, _STEP_FIELDS)


@dataclass(frozen=True)
class Plan:
    key: KeyRef
    state: KeyState
    steps: tuple[PlanStep, ...]
    discovery_errors: tuple[dict[str, Any], ...] = ()
    not_consumers: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    waves: tuple[dict[str, Any], ...] = ()  # what each canary wave would touch (the planner's summary)

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
            "summary": count(s.action for s in self.steps),
            "waves": list(self.waves),
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
    outcome: str  # planned, updated, verified, skipped, failed, in-flight (IN_FLIGHT)
    error_code: str | None = None
    error: str | None = None
    hint: str | None = None
    duration_ms: int | None = None
    attempts: int = 0
    wave: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _wire(self, _RESULT_FIELDS)


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
    started_at: str = field(default_factory=lambda: utc_now())
    finished_at: str | None = None
    halted: str | None = None  # "halted after wave n: ..." (canary waves)
    requeue_after: int | None = None  # soaking between waves: continue after this many seconds
    soaking: bool = False  # held for a canary-wave soak (requeued, or another request carries on)
    interrupted: str | None = None  # SIGINT, SIGTERM or TimeBudgetExhausted: why the run stopped early
    shards: int | None = None  # its `update` steps were handed to this many shards on the queue

    @property
    def status(self) -> str:
        """DESIGN.md section 7: a run fails only when a step failed or a consumer meant to update did
        not. An unreachable scope fails it too (there may be consumers it could not see; a retry
        will); a scope it may not read is reported for a person. A run stopped early by a signal
        or its budget is `interrupted` whatever its steps did: the rest was not attempted."""
        if self.interrupted is not None:
            return "interrupted"
        if self.error is not None:
            return "failed"
        if self.shards:
            return "sharded"  # the shards carry on; the last of them closes the run
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
        if self.interrupted is not None:  # a target that failed on the way still says 4
            return 4 if any(s.outcome == "failed" for s in self.steps) else INTERRUPTED_EXIT
        return {"failed": 4, "needs-attention": 3}.get(self.status, 0)

    def progress(self) -> dict[str, int]:
        """What became of the `update` steps: moved (on the new version), in flight (written,
        not confirmed), not started, failed."""
        updates = [s.outcome for s in self.steps if s.action == UPDATE]
        return {
            "moved": sum(1 for o in updates if o in ("verified", "updated")),
            "inFlight": updates.count(IN_FLIGHT),
            "notStarted": updates.count("skipped"),
            "failed": updates.count("failed"),
        }

    def interruption(self) -> dict[str, Any] | None:
        """Why and where the run stopped early (None for a run that was not interrupted)."""
        if self.interrupted is None:
            return None
        return {"reason": self.interrupted, **self.progress()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "keyId": self.key_id,
            "dryRun": self.dry_run,
            "status": self.status,
            "desiredVersion": self.desired_version,
            "createdVersion": self.created_version,
            "summary": count(s.outcome for s in self.steps),
            "notes": self.notes,
            "discoveryErrors": self.discovery_errors,
            "error": self.error.summary() if self.error else None,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "halted": self.halted,
            "requeueAfterSeconds": self.requeue_after,
            "interrupted": self.interruption(),
            "shards": self.shards,
            "steps": [s.to_dict() for s in self.steps],
        }


def count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def error_dict(scope: str, kind: str, info: ErrorInfo) -> dict[str, Any]:
    return {
        "scope": scope,
        "kind": kind,
        "status": info.status,
        "code": info.code,
        "message": info.message,
        "unreachable": info.unreachable,
    }


def result_of(step: PlanStep, outcome: str) -> StepResult:
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
