"""The retire guard: a key version is disabled only when no consumer holds it.

`disable` takes the key's lease (so no run moves a consumer onto the version meanwhile), makes
one fresh discovery and key read, and refuses, naming the consumers, while anything holds the
version; a subscription that could not be listed also refuses (nobody can say it holds
nothing). `force` disables anyway and is audited as an override with the consumers named.
Nothing here runs unattended: the sweep only reports candidates.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from rotation.azure.kinds import retire_grace
from rotation.azure.retry import Deadline, call
from rotation.azure.vault import disable_version, set_version_enabled
from rotation.estate.inventory import KeyView, Root, holders_by_version, view_of
from rotation.model.consumer import Consumer
from rotation.model.ids import KeyRef
from rotation.model.keystate import KeyState, VersionInfo
from rotation.model.times import iso
from rotation.run.gather import Unreachable
from rotation.run.reverts import describe_revert, reverted_to
from rotation.storage.audit import AuditStore, AuditTrail
from rotation.storage.ledger import LeaseHeld, Ledger, lease_owner
from rotation.storage.written import Written


class Retiring(Root, Protocol):
    """What the retire guard needs from the composition root (rotation/service.py's Service)."""

    @property
    def audit(self) -> AuditStore: ...
    @property
    def ledger(self) -> Ledger: ...


DISABLED, ALREADY_DISABLED, REFUSED, OVERRIDDEN = (
    "disabled",
    "already-disabled",
    "refused",
    "disabled-override",
)
ENABLED, ALREADY_ENABLED = "enabled", "already-enabled"


class RetireError(Exception):
    """The request itself is wrong (vault not allowed, no such version), the key is busy, or
    Key Vault could not be read."""

    def __init__(self, message: str, *, busy: bool = False, unreachable: bool = False) -> None:
        super().__init__(message)
        self.busy, self.unreachable = busy, unreachable


@dataclass(frozen=True)
class DisableOutcome:
    """What `versions disable` (or `versions enable`) did."""

    key: KeyRef  # versioned
    outcome: str  # disabled, already-disabled, refused, disabled-override; enabled, already-enabled
    holders: tuple[str, ...]  # resource ids that hold the version
    message: str
    operation_id: str
    reverts: tuple[dict[str, Any], ...] = field(default=())  # consumers reverted to it lately

    @property
    def refused(self) -> bool:
        return self.outcome == REFUSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "keyId": self.key.id,
            "outcome": self.outcome,
            "consumers": list(self.holders),
            "message": self.message,
            "operationId": self.operation_id,
            "reverts": list(self.reverts),
        }


def key_view(service: Retiring, key: KeyRef, deadline: Deadline | None = None) -> KeyView:
    """The key's versions and who holds each, from one discovery and one key read."""
    reconciler = service.reconciler
    found = reconciler.inventory(key.versionless(), None, deadline)
    return view_of(reconciler, key.versionless(), found, deadline)


def disable(
    service: Retiring,
    key: KeyRef,
    *,
    force: bool,
    actor: str,
    clock: Callable[[], datetime] | None = None,
) -> DisableOutcome:
    """`clock` gives the time the guard windows (revert guard, kinds' grace) are measured at (default: now)."""
    now = (clock or (lambda: datetime.now(UTC)))()
    return _under_lease(
        service, key, actor, "disable", lambda trail: _disable(service, key, force, trail, now)
    )


def enable(service: Retiring, key: KeyRef, *, actor: str) -> DisableOutcome:
    """Undo a disable (a forced one, usually): under the same checks and lease, audited."""
    return _under_lease(service, key, actor, "enable", lambda trail: _enable(service, key, trail))


def _under_lease(
    service: Retiring, key: KeyRef, actor: str, verb: str, work: Callable[[AuditTrail], DisableOutcome]
) -> DisableOutcome:
    """A version changes only under the key's lease (no run plans against it meanwhile), in an
    audited operation of its own."""
    if not key.version:
        raise RetireError(f"give the version to {verb}: https://<vault>/keys/<name>/<version>")
    if not service.settings.vault_allowed(key.vault_host):
        raise RetireError(f"vault {key.vault_host} is not in ROTATION_ALLOWED_VAULTS")
    operation = str(uuid.uuid4())
    lease = service.ledger.acquire(key, owner=lease_owner(operation))
    if isinstance(lease, LeaseHeld):
        raise RetireError(
            f"run {lease.owner} holds {key.versionless_id} until {lease.expires_at:%H:%M:%S} UTC; try again then",
            busy=True,
        )
    trail = AuditTrail(service.audit, run_id=operation, key=key, actor=actor, advance_key_head=True)
    try:
        return work(trail)
    finally:
        trail.flush()
        lease.release()


def _enable(service: Retiring, key: KeyRef, trail: AuditTrail) -> DisableOutcome:
    assert key.version is not None  # _under_lease refused a versionless id
    deadline = Deadline(service.settings.time_budget_seconds)
    try:
        state = service.reconciler.read_state(key.versionless(), deadline)
    except Unreachable as exc:
        raise RetireError(str(exc), unreachable=exc.info.status != 404) from None
    version = state.version(key.version)
    if version is None:
        raise RetireError(f"{key.versionless_id} has no version {key.version}")
    if version.enabled:
        trail.record(
            "version-enable", outcome=ALREADY_ENABLED, message="already enabled", toVersion=key.version
        )
        return DisableOutcome(key, ALREADY_ENABLED, (), "already enabled", trail.run_id)
    client = service.clients.keys(key.vault_url)
    call(
        lambda: set_version_enabled(client, key, key.version or "", enabled=True),
        policy=service.reconciler.retry,
        what=f"enable {key.id}",
    )
    after = service.reconciler.read_state(key.versionless(), deadline).desired
    message = f"enabled; the desired version is now {after.version if after else 'none usable'}"
    if after is not None and after.version == key.version:
        message += " (the next run moves consumers to it)"
    trail.record("version-enable", outcome=ENABLED, message=message, toVersion=key.version)
    return DisableOutcome(key, ENABLED, (), message, trail.run_id)


def _disable(service: Retiring, key: KeyRef, force: bool, trail: AuditTrail, now: datetime) -> DisableOutcome:
    view = key_view(service, key, Deadline(service.settings.time_budget_seconds))
    if view.error or view.state is None:
        raise RetireError((view.error or {}).get("message") or f"{key.versionless_id} could not be read")
    version = view.state.version(key.version)
    if version is None:
        raise RetireError(f"{key.versionless_id} has no version {key.version}")
    holders = tuple(c.target for c in holders_by_version(view.consumers, view.state).get(version.version, ()))
    unknown = [f"{e.scope} ({e.kind})" for e in view.discovery_errors]
    days = service.settings.revert_guard_days
    written = service.reconciler.reverts.written(key)
    rows = reverted_to(written, version.version, now, days)
    reverts = tuple({"target": r.target, **(r.revert_dict() or {})} for r in rows)
    leaving = in_grace(view.consumers, service.reconciler.kinds, view.state, version, written, now)
    detail = {
        "consumers": list(holders)[:100],
        "force": force,
        "reverts": list(reverts)[:100],
        "inGrace": [g.to_dict(now) for g in leaving[:100]],
    }
    fields = {"fromVersion": version.version, "detail": detail}
    if not version.enabled:
        trail.record("version-disable", outcome=ALREADY_DISABLED, message="already disabled", **fields)
        return DisableOutcome(key, ALREADY_DISABLED, holders, "already disabled", trail.run_id)
    refusal = None if force else _refusal(holders, unknown, rows, days) or _grace_refusal(leaving, now)
    if refusal is not None:
        reason, why = refusal
        trail.record("version-disable", outcome=REFUSED, reason=reason, message=why, **fields)
        return DisableOutcome(key, REFUSED, holders, f"refused: {why}", trail.run_id, reverts)
    client = service.clients.keys(key.vault_url)
    call(
        lambda: disable_version(client, key, version.version),
        policy=service.reconciler.retry,
        what=f"disable {key.id}",
    )
    outcome = OVERRIDDEN if holders or unknown or rows or leaving else DISABLED
    message = (
        f"disabled with --force while {len(holders)} consumer(s) held it"
        + (f" and {len(rows)} had been reverted to it lately" if rows else "")
        + (f" and {len(leaving)} had left it less than their service's grace ago" if leaving else "")
        if outcome == OVERRIDDEN
        else "disabled"
    )
    trail.record(
        "version-disable",
        outcome=outcome,
        reason="forced" if outcome == OVERRIDDEN else None,
        message=message,
        **fields,
    )
    return DisableOutcome(key, outcome, holders, message, trail.run_id, reverts)


def _refusal(
    holders: tuple[str, ...], unknown: list[str], reverts: list[Written], days: int
) -> tuple[str, str] | None:
    """(reason, why) the version may not be disabled without --force, or None."""
    if holders:
        names = ", ".join(h.rsplit("/", 1)[-1] for h in holders[:20])
        return "version-in-use", f"{len(holders)} consumer(s) still hold it: {names}"
    if unknown:
        return "version-in-use", (
            f"could not list every consumer ({'; '.join(unknown[:5])}), so nobody can say it is unused"
        )
    if reverts:
        return "version-reverted-to", (
            f"a deployment reverted {len(reverts)} consumer(s) to it within ROTATION_REVERT_GUARD_DAYS={days}: "
            + ", ".join(describe_revert(r) for r in reverts[:20])
            + "; the next deployment may put it back: fix the template first (docs/runbook.md), or --force"
        )
    return None


# -- kinds' grace after a consumer leaves a version ------------------------------------------------
@dataclass(frozen=True)
class InGrace:
    """A consumer that left the version less than its kind's `retire_grace` ago."""

    target: str
    kind: str
    left_at: datetime
    grace: timedelta

    def remaining(self, now: datetime) -> timedelta:
        return self.left_at + self.grace - now

    def to_dict(self, now: datetime) -> dict[str, Any]:
        left = max(0, int(self.remaining(now).total_seconds()))
        return {"target": self.target, "kind": self.kind, "leftAt": iso(self.left_at), "secondsLeft": left}


def in_grace(
    consumers: Iterable[Consumer],
    kinds: Mapping[str, object],
    state: KeyState,
    version: VersionInfo,
    written: Mapping[str, Written],
    now: datetime,
) -> list[InGrace]:
    """Consumers of kinds with a grace period that left `version` less than that long ago: moved
    by a run (when this system last verified them on a newer version: the written store), or
    following new versions by themselves (when the version after it was created)."""
    found = []
    for consumer in consumers:
        grace = retire_grace(kinds.get(consumer.kind), consumer)
        left = _left_at(consumer, state, version, written.get(consumer.target.lower())) if grace else None
        if left is not None and left + grace > now:
            found.append(InGrace(consumer.target, consumer.kind, left, grace))
    return sorted(found, key=lambda g: g.left_at + g.grace, reverse=True)


def _left_at(
    consumer: Consumer, state: KeyState, version: VersionInfo, row: Written | None
) -> datetime | None:
    """When the consumer left `version`, if it did and we can tell."""
    if consumer.follows_new_versions:
        after = [v for v in state.versions if state.is_newer(v, version)]
        return min((v.created for v in after), default=None)
    moved_to = state.version(row.version) if row is not None else None
    if row is None or moved_to is None or row.written_at is None or not state.is_newer(moved_to, version):
        return None
    return row.written_at


def _grace_refusal(leaving: list[InGrace], now: datetime) -> tuple[str, str] | None:
    if not leaving:
        return None
    last = leaving[0]
    names = ", ".join(
        f"{g.kind} {g.target.rsplit('/', 1)[-1]} (left {g.left_at:%H:%M} UTC, {_span(g.remaining(now))} left)"
        for g in leaving[:20]
    )
    return "version-in-grace", (
        f"{len(leaving)} consumer(s) left it less than their service's grace ago and may still need it: "
        f"{names}; try again after {last.left_at + last.grace:%Y-%m-%d %H:%M} UTC, or --force"
    )


def _span(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() + 59) // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


# -- reporting (the sweep and `rotation report`) ----------------------------------------------------
def retire_candidates(view: KeyView) -> list[dict[str, Any]]:
    """Enabled versions older than the desired one that no consumer holds: safe to disable."""
    state = view.state
    if state is None or state.desired is None:
        return []
    held = holders_by_version(view.consumers, state)
    return [
        {
            "keyId": view.key.with_version(v.version).id,
            "created": v.created.isoformat(),
            "expires": v.expires.isoformat() if v.expires else None,
        }
        for v in state.versions
        if v.enabled and v.version not in held and state.is_newer(state.desired, v)
    ]


def expiring_consumers(view: KeyView, now: datetime, window_days: int) -> list[dict[str, Any]]:
    """Consumers whose version (or, versionless, the key's current one) expires within the window."""
    state = view.state
    if state is None:
        return []
    end = now + timedelta(days=window_days)
    found = []
    for version, consumers in holders_by_version(view.consumers, state).items():
        info = state.version(version)
        if info is not None and info.expires is not None and info.expires <= end:
            found += [
                {
                    "resourceId": c.target,
                    "keyId": view.key.with_version(version).id,
                    "expires": info.expires.isoformat(),
                }
                for c in consumers
            ]
    return found
