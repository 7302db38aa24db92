"""A consumer put back on an older version than this system wrote to it (a deployment whose
template pins the key version, typically) is a `consumer-reverted` incident.

The detection is pure (`is_revert`, `find`): a consumer whose version is older, by the key's
version order (model/keystate.py), than the version this system last verified on it. A run
reads what it wrote with one query per key (storage/written.py), asks the activity log who
changed each reverted consumer (one read per reverted consumer only, azure/activitylog.py),
says so in the step's message, records the incident (audit, a WARNING log line, a telemetry
counter) and rolls the consumer forward with the normal `update` step. The versions the run
verifies are remembered as it goes (storage/written.py's VerifiedAsTheyGo), and at its end
whatever of them was not stored yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from rotation import telemetry
from rotation.azure.activitylog import Change, last_write
from rotation.azure.kinds import write_actions
from rotation.azure.retry import Deadline, RetryPolicy
from rotation.concurrency import submit_in_context
from rotation.model.decisions import UPDATE
from rotation.model.keystate import KeyState
from rotation.model.results import Plan, PlanStep, StepResult
from rotation.model.times import iso
from rotation.storage.audit import AuditTrail
from rotation.storage.written import RevertRow, VerifiedAsTheyGo, Written, WrittenStore

if TYPE_CHECKING:
    from rotation.azure.clients import Clients
    from rotation.model.consumer import Consumer
    from rotation.model.ids import KeyRef

log = logging.getLogger("rotation.reverts")
KIND = "consumer-reverted"  # the audit record kind (DESIGN.md section 7)
# How far back the activity log is read when this system's write time is unknown.
_LOOKBACK = timedelta(days=30)
_READERS = 8


def is_revert(state: KeyState, found: str | None, written: str | None) -> bool | None:
    """Whether the version found on a consumer is older than the one this system wrote there.
    None when it cannot be told: no version found (versionless) or written, or either is not a
    version of the key any more."""
    found_info, written_info = state.version(found), state.version(written)
    if found_info is None or written_info is None:
        return None
    return state.is_newer(written_info, found_info)


def find(plan: Plan, written: Mapping[str, Written]) -> list[tuple[PlanStep, Written]]:
    """The plan's steps whose consumer was reverted, each with what this system wrote."""
    found = []
    for step in plan.steps:
        row = written.get(step.target.lower())
        if row is not None and is_revert(plan.state, step.from_version, row.version):
            found.append((step, row))
    return found


def reverted_to(written: Mapping[str, Written], version: str, now: datetime, days: int) -> list[Written]:
    """The consumers reverted to `version` within the last `days` days (0: the guard is off)."""
    if days <= 0:
        return []
    since = now - timedelta(days=days)
    return [
        row
        for row in written.values()
        if (row.reverted_to or "").lower() == version.lower() and row.reverted_at and row.reverted_at >= since
    ]


def describe_revert(row: Written) -> str:
    """`<name> (by <caller>, correlation <id>, at <time>)` for a refusal or a table cell."""
    name = row.target.rsplit("/", 1)[-1]
    by = row.reverted_by or "unknown caller"
    correlation = f", correlation {row.correlation_id}" if row.correlation_id else ""
    when = f", at {iso(row.reverted_at)}" if row.reverted_at else ""
    return f"{name} (by {by}{correlation}{when})"


def marks(
    state: KeyState, consumers: Iterable[Consumer], written: Mapping[str, Written], now: datetime, days: int
) -> dict[str, dict[str, object]]:
    """Lower-cased resource id -> what `inventory` shows as `reverted`: a consumer on an older
    version than this system wrote (not rolled forward yet), or one reverted within `days`."""
    shown: dict[str, dict[str, object]] = {}
    since = now - timedelta(days=days)
    for consumer in consumers:
        row = written.get(consumer.target.lower())
        if row is None:
            continue
        if is_revert(state, consumer.version, row.version):
            shown[consumer.target.lower()] = {
                "toVersion": consumer.version,
                "fromVersion": row.version,
                "pending": True,  # the next run records it and rolls the consumer forward
            }
        elif (recorded := row.revert_dict()) and row.reverted_at and row.reverted_at >= since:
            shown[consumer.target.lower()] = {**recorded, "pending": False}
    return shown


@dataclass(frozen=True)
class Revert:
    step: PlanStep  # as planned, before the message says it was reverted
    written: Written
    change: Change

    @property
    def written_version(self) -> str:
        return self.written.version or ""

    def message(self) -> str:
        when = f" at {iso(self.written.written_at)}" if self.written.written_at else ""
        return (
            f"reverted: run {self.written.run_id} set {self.written_version}{when}; now on "
            f"{self.step.from_version}, changed by: {self.change.describe()}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.step.target,
            "writtenVersion": self.written_version,
            "foundVersion": self.step.from_version,
            "writtenByRun": self.written.run_id,
            "writtenAt": iso(self.written.written_at) if self.written.written_at else None,
            "changedBy": self.change.to_dict(),
        }


class RevertWatch:
    """The run's side of it; `store` None (no ledger) turns it off."""

    def __init__(self, store: WrittenStore | None, clients: Clients, retry: RetryPolicy) -> None:
        self.store, self.clients, self.retry = store, clients, retry

    def written(self, key: KeyRef) -> dict[str, Written]:
        """What this system wrote to the key's consumers; empty (and logged) if unreadable."""
        if self.store is None:
            return {}
        try:
            return self.store.read(key)
        except Exception as exc:  # noqa: BLE001 - the ledger is context: the run goes on without it
            log.warning("could not read what was written for %s: %s", key.versionless_id, exc)
            return {}

    def review(self, plan: Plan, deadline: Deadline | None) -> tuple[Plan, list[Revert]]:
        """The plan with each reverted consumer's message saying so, and the reverts."""
        found = find(plan, self.written(plan.key))
        if not found:
            return plan, []
        # One activity-log read per reverted consumer, a few at once (a deployment may revert many).
        with ThreadPoolExecutor(max_workers=min(_READERS, len(found))) as pool:
            changes = [
                submit_in_context(pool, partial(self._who, step.target, row, deadline)) for step, row in found
            ]
            reverts = [
                Revert(step, row, change.result()) for (step, row), change in zip(found, changes, strict=True)
            ]
        by_target = {r.step.target: r for r in reverts}
        steps = tuple(
            replace(s, message=f"{by_target[s.target].message()}; {s.message}")
            if s.target in by_target
            else s
            for s in plan.steps
        )
        return replace(plan, steps=steps), reverts

    def _who(self, target: str, row: Written, deadline: Deadline | None) -> Change:
        since = row.written_at or datetime.now(UTC) - _LOOKBACK
        return last_write(
            self.clients.arm(), target, since, policy=self.retry, deadline=deadline, actions=write_actions()
        )

    def record(self, key: KeyRef, reverts: list[Revert], trail: AuditTrail, desired: str | None) -> None:
        """The incidents: an audit record, a WARNING line and a counter each; then the ledger rows
        `versions disable` and `inventory` read."""
        for revert in reverts:
            step = revert.step
            rolls = desired if step.action == UPDATE else None
            trail.record(
                KIND,
                target=step.target,
                fromVersion=revert.written_version,
                toVersion=step.from_version,
                reason=KIND,
                outcome="reported",
                message=f"{revert.message()}; {_next(step, desired)}",
                detail={**revert.to_dict(), "rollForwardTo": rolls, "kind": step.kind},
            )
            log.warning(
                "consumer-reverted: %s moved from %s back to %s by %s",
                step.target,
                revert.written_version,
                step.from_version,
                revert.change.describe(),
            )
            telemetry.consumer_reverted(step.kind)
        self._store(key, lambda store: store.record_reverts(key, (_row(r) for r in reverts)))

    def as_they_go(self, key: KeyRef, run_id: str) -> VerifiedAsTheyGo | None:
        """A writer for the versions the run verifies, while it goes (None: no ledger)."""
        return VerifiedAsTheyGo(self.store, key, run_id) if self.store is not None else None

    def remember(
        self,
        key: KeyRef,
        steps: Iterable[StepResult],
        run_id: str,
        stored: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        """The versions this run verified, so the next run can tell a revert; `stored`: the
        (target, version) pairs written while the run went (VerifiedAsTheyGo), not written again."""
        done = [
            (s.target, s.to_version)
            for s in steps
            if s.outcome == "verified" and s.to_version and (s.target, s.to_version) not in stored
        ]
        if done:
            now = datetime.now(UTC)
            self._store(key, lambda store: store.record_verified(key, done, run_id, now))

    def _store(self, key: KeyRef, write: Callable[[WrittenStore], None]) -> None:
        if self.store is None:
            return
        try:
            write(self.store)
        except Exception as exc:  # noqa: BLE001 - the run's own records are in the audit trail
            log.warning("could not record written versions for %s: %s", key.versionless_id, exc)


def _next(step: PlanStep, desired: str | None) -> str:
    """What the run does about it: the normal update, or why not (opted out since, blocked...)."""
    if step.action == UPDATE:
        return f"rolling forward to {desired}"
    return f"not rolled forward: {step.action} ({step.reason})"


def _row(revert: Revert) -> RevertRow:
    change = revert.change
    return RevertRow(
        target=revert.step.target,
        to_version=revert.step.from_version or "",
        from_version=revert.written_version,
        at=datetime.now(UTC),
        by=change.caller,
        correlation_id=change.correlation_id,
        operation=change.operation,
    )
