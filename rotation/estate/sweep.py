"""The drift sweep: catches what lost or late events missed.

One inventory of every consumer in the configured subscriptions, grouped by key (keys in
vaults that are not allowed are left alone). For each key: read its state, plan, and queue
one request when a consumer is behind the desired version, or when the desired version
expires within ROTATION_EXPIRY_WINDOW_DAYS with nothing newer (queued as near-expiry; the run
decides whether to create a version). Only keys that some consumer uses are considered: a
key nobody consumes is not this system's to rotate. A sharded run whose shards all ended but
whose closer died with its message (poisoned, or lost) is closed here, once (run/shardrun.py).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from rotation.azure.discovery import DiscoveryError, Inventory, list_consumers
from rotation.azure.retry import Deadline
from rotation.concurrency import map_in_context
from rotation.config import Settings
from rotation.estate.inventory import Root
from rotation.estate.report import sweep_report
from rotation.model.decisions import UPDATE
from rotation.model.events import NEAR_EXPIRY
from rotation.model.ids import KeyRef
from rotation.model.keystate import KeyState
from rotation.model.request import new_request
from rotation.model.times import parse_iso
from rotation.run.gather import Unreachable
from rotation.run.shardrun import ShardStores, settle
from rotation.run.submit import submit
from rotation.storage.audit import AuditStore, AuditTrail
from rotation.storage.runs import RunStore

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

log = logging.getLogger("rotation.sweep")


class Estate(Root, Protocol):
    """What the sweep needs from the composition root (rotation/service.py's Service): what its
    daily report needs, and the stores it queues work through."""

    @property
    def audit(self) -> AuditStore: ...
    @property
    def runs(self) -> RunStore: ...
    @property
    def requests_queue(self) -> QueueClient: ...
    @property
    def shards(self) -> ShardStores: ...


@dataclass(frozen=True)
class KeyFinding:
    key: KeyRef
    consumers: int
    behind: int
    near_expiry: str | None  # the version that expires within the window, with nothing newer
    error: str | None = None
    request_id: str | None = None
    skipped: bool = False

    @property
    def needs_work(self) -> bool:
        return self.error is None and (self.behind > 0 or self.near_expiry is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "keyId": self.key.versionless_id,
            "consumers": self.consumers,
            "behind": self.behind,
            "nearExpiry": self.near_expiry,
            "error": self.error,
            "requestId": self.request_id,
        }


@dataclass(frozen=True)
class NotAllowed:
    """Consumers whose keys live in vaults outside ROTATION_ALLOWED_VAULTS: counted, never acted on."""

    consumers: int = 0
    vaults: tuple[str, ...] = ()

    def summary(self) -> str:
        noun = "consumer uses a key" if self.consumers == 1 else "consumers use keys"
        return f"{self.consumers} {noun} in vaults not allowed: {', '.join(self.vaults)} (not acted on)"

    def to_dict(self) -> dict[str, Any]:
        return {"consumers": self.consumers, "vaults": list(self.vaults)}


def not_allowed(inventory: Inventory, settings: Settings) -> NotAllowed:
    hosts = [c.key.vault_host for c in inventory.consumers if not settings.vault_allowed(c.key.vault_host)]
    return NotAllowed(len(hosts), tuple(sorted(set(hosts))))


@dataclass(frozen=True)
class SweepResult:
    findings: list[KeyFinding]
    discovery_errors: list[DiscoveryError]
    not_allowed: NotAllowed = NotAllowed()
    closed_runs: list[str] = field(default_factory=list)  # sharded runs left open, closed now

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": [f.to_dict() for f in self.findings],
            "notAllowed": self.not_allowed.to_dict(),
            "closedRuns": self.closed_runs,
        }

    @property
    def unreachable(self) -> bool:
        return any(f.error for f in self.findings) or any(e.error.unreachable for e in self.discovery_errors)


def sweep(service: Estate, *, dry_run: bool = False, actor: str = "sweep") -> SweepResult:
    settings = service.settings
    deadline = Deadline(settings.time_budget_seconds)
    trail = AuditTrail(service.audit, actor=actor)
    inventory = list_consumers(
        service.clients,
        settings.subscriptions,
        policy=service.reconciler.retry,
        deadline=deadline,
        workers=settings.concurrency,
        discovery=settings.discovery,
    )
    for error in inventory.errors:
        trail.record(
            "discovery-failed",
            source="sweep",
            target=error.scope,
            outcome="failed",
            errorCode=error.error.code,
            message=error.error.summary(),
        )
    keys = [k for k in inventory.keys().values() if settings.vault_allowed(k.vault_host)]
    outside = not_allowed(inventory, settings)

    def check(key: KeyRef) -> KeyFinding:
        found = inventory.for_key(key)
        try:
            return _check_key(service, key, found, deadline)
        except Exception as exc:  # this key is reported; every other key is still checked
            log.exception("sweep: could not check %s", key.versionless_id)
            return KeyFinding(key, len(found.consumers), 0, None, error=_could_not("check the key", exc))

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(keys) or 1))) as pool:
        findings = list(map_in_context(pool, check, keys))
    queued = [_act_on(service, finding, dry_run, actor, trail) for finding in findings]
    closed = [] if dry_run else close_sharded(service, trail)
    if not dry_run:  # once a day: the rotation-age report, retire candidates, expiring consumers
        sweep_report(service, inventory, trail, datetime.now(UTC))
    trail.record(
        "sweep-finished",
        source="sweep",
        outcome="dry-run" if dry_run else "done",
        detail={
            "keys": len(queued),
            "queued": sum(1 for f in queued if f.request_id),
            "discoveryErrors": len(inventory.errors),
            "notAllowed": outside.to_dict(),
            "closedRuns": len(closed),
        },
        message=outside.summary() if outside.consumers else None,
    )
    trail.flush()
    return SweepResult(queued, list(inventory.errors), outside, closed)


def close_sharded(service: Estate, trail: AuditTrail) -> list[str]:
    """Sharded runs whose shards all ended and that nobody closed (the closing shard's instance
    died after its mark and its message was poisoned or lost): closed now, each in its own
    trail (`run-finished`, `closedBy` the sweep) and named in the sweep's. Runs with a shard
    still under way, or whose close a live closer claimed, are left alone."""
    closed = []
    book = service.shards.book
    for parent in book.left_open():
        try:
            if not settle(service.shards, parent, f"sweep/{trail.run_id}"):
                book.unlist_if_closed(parent)  # else still running, or a live closer is on it
                continue
        except Exception as exc:  # reported for this run; the others are still closed
            log.exception("sweep: could not close sharded run %s", parent)
            trail.record(
                "sharded-run-closed",
                source="sweep",
                outcome="failed",
                message=_could_not(f"close run {parent}", exc),
            )
            continue
        closed.append(parent)
        trail.record(
            "sharded-run-closed",
            source="sweep",
            outcome="closed",
            reason="closer-lost",
            message=f"run {parent}: every shard had ended and the run was not closed; closed now",
            detail={"runId": parent},
        )
    return closed


def _act_on(service: Estate, finding: KeyFinding, dry_run: bool, actor: str, trail: AuditTrail) -> KeyFinding:
    """Queue one request for a key that needs work (unless it failed recently), and record it."""
    if finding.needs_work and _failed_recently(service, finding.key):
        # Its last run failed less than a day ago and ended in the poison queue for on-call:
        # queueing it every hour would only flood that queue.
        finding = replace(
            finding, error="last run failed less than 24 h ago; see `rotation deadletters list`", skipped=True
        )
    if finding.needs_work and not dry_run:
        request = new_request(
            finding.key,
            "sweep",
            actor,
            event_type=NEAR_EXPIRY if finding.near_expiry else None,
            event_version=finding.near_expiry,
        )
        try:
            submit(service.requests_queue, service.runs, request)
        except Exception as exc:  # reported for this key; the next keys are still queued
            log.exception("sweep: could not queue %s", finding.key.versionless_id)
            finding = replace(finding, error=_could_not("queue its request", exc))
        else:
            finding = replace(finding, request_id=request.request_id)
    trail.record(
        "sweep-checked",
        source="sweep",
        keyId=finding.key.versionless_id,
        outcome=_checked_outcome(finding, dry_run),
        message=finding.error,
        detail=finding.to_dict(),
    )
    return finding


def _could_not(what: str, exc: Exception) -> str:
    return f"could not {what} ({type(exc).__name__}: {exc})"


def _checked_outcome(finding: KeyFinding, dry_run: bool) -> str:
    if finding.request_id:
        return "queued"
    if finding.needs_work and dry_run:
        return "would-queue"
    if finding.skipped:
        return "skipped"
    return "failed" if finding.error else "nothing-to-do"


def _failed_recently(service: Estate, key: KeyRef) -> bool:
    """Whether the key's last run (its audit chain head) failed within the last day."""
    _, run_id = service.audit.chain_head(key)
    run = service.runs.get(run_id) if run_id else None
    if not run or run.get("status") != "failed" or not run.get("finishedAt"):
        return False
    finished = parse_iso(str(run["finishedAt"]))
    return datetime.now(UTC) - finished < timedelta(hours=24)


def _check_key(service: Estate, key: KeyRef, inventory: Inventory, deadline: Deadline) -> KeyFinding:
    reconciler = service.reconciler
    try:
        state = reconciler.read_state(key, deadline)
    except Unreachable as exc:
        return KeyFinding(key, len(inventory.consumers), 0, None, error=str(exc))
    plan = reconciler.plan_from(key, state, inventory, None)
    behind = sum(1 for step in plan.steps if step.action == UPDATE)
    window_end = datetime.now(UTC) + timedelta(days=service.settings.expiry_window_days)
    return KeyFinding(key, len(plan.steps), behind, _near_expiry(state, window_end))


def _near_expiry(state: KeyState, window_end: datetime) -> str | None:
    """The version whose expiry makes the key near expiry: the desired (newest usable) one
    expiring within the window; with none usable, the newest version when it is enabled and
    expires within the window (renewal overdue). A newest version that never expires is not
    near expiry, usable or not (an EC key): re-queuing it every hour would change nothing. A
    disabled newest version is someone's decision and is left alone."""
    desired = state.desired
    if desired is not None:
        return desired.version if desired.expires is not None and desired.expires <= window_end else None
    newest = state.versions[-1] if state.versions else None
    if newest is None or not newest.enabled or newest.expires is None or newest.expires > window_end:
        return None
    return newest.version
