"""The rotation-age report: compliance evidence of which consumers sit on an old or expiring key
version, and why each has not moved.

A consumer is stale when its effective version (the one it holds, or the key's current version
for a versionless one) was created more than `max_age_days` ago, or expires within
ROTATION_EXPIRY_WINDOW_DAYS. `rotation report` exits 3 when any is stale, so a pipeline can
gate on it; the sweep writes the same report once a day to blob container `rotation-reports`
(`rotation-age/<YYYY-MM-DD>.json`, create-only), with the versions that could be retired and
the consumers on expiring versions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError

from rotation.azure.discovery import Inventory
from rotation.estate.inventory import VERSIONLESS, Estate, KeyView, Root, from_inventory, rows_of
from rotation.estate.pictures import KeyPicture, picture
from rotation.estate.retire import expiring_consumers, retire_candidates
from rotation.model.ids import KeyRef
from rotation.model.times import iso_or_none
from rotation.run.reconcile import Reconciler

# The sweep's daily rotation-age report, one blob a day under rotation-age/ (infra deploys the
# container with a lifecycle rule that deletes them after reportRetentionDays).
REPORTS_CONTAINER = "rotation-reports"


PERSON_ACTIONS = ("blocked", "newer-than-desired", "redeploy-required", "manual-required")


def not_moved(action: str | None, reason: str | None, message: str, desired: str | None) -> str:
    """Why a stale consumer is where it is, in one phrase for an auditor."""
    if action == "opted-out":
        return f"opted out ({message})"
    if action == "blocked":
        return f"blocked ({reason}): {message}"
    if action in PERSON_ACTIONS:
        return f"needs a person ({action}): {message}"
    if action == "update":
        return f"behind: the next run moves it to {desired}"
    if action in ("already-current", "auto-rotating"):
        return "on the key's desired version: the key itself needs a new version"
    return message


@dataclass(frozen=True)
class AgeReport:
    generated_at: datetime
    max_age_days: int
    expiry_window_days: int
    stale: list[dict[str, Any]]
    not_evaluated: list[dict[str, Any]]  # outside vaults, unreadable keys
    retire_candidates: list[dict[str, Any]] = field(default_factory=list)
    expiring_consumers: list[dict[str, Any]] = field(default_factory=list)
    discovery_errors: list[dict[str, Any]] = field(default_factory=list)
    unreachable: bool = False
    pictures: tuple[KeyPicture, ...] = ()  # per key: consumers per version, their age

    @property
    def exit_code(self) -> int:
        """5 when part of the estate could not be read (the evidence is incomplete), 3 when a
        consumer is stale, else 0."""
        return 5 if self.unreachable else 3 if self.stale else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "generatedAt": iso_or_none(self.generated_at),
            "maxAgeDays": self.max_age_days,
            "expiryWindowDays": self.expiry_window_days,
            "stale": self.stale,
            "notEvaluated": self.not_evaluated,
            "retireCandidates": self.retire_candidates,
            "expiringConsumers": self.expiring_consumers,
            "discoveryErrors": self.discovery_errors,
            "keys": [p.to_dict() for p in self.pictures],
        }


def build(estate: Estate, *, now: datetime, max_age_days: int, window_days: int) -> AgeReport:
    stale: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for view in estate.keys:
        if view.state is None:
            skipped += [
                {"resourceId": r.resource_id, "keyId": r.key_id, "reason": r.reason, "message": r.message}
                for r in rows_of(view)
            ]
            continue
        stale += _stale(view, now, max_age_days, window_days)
    return AgeReport(
        now,
        max_age_days,
        window_days,
        stale,
        skipped,
        [c for v in estate.keys for c in retire_candidates(v)],
        [c for v in estate.keys for c in expiring_consumers(v, now, window_days)],
        list(estate.discovery_errors),
        estate.unreachable,
        tuple(picture(view, now) for view in estate.keys),
    )


def _stale(view: KeyView, now: datetime, max_age_days: int, window_days: int) -> list[dict[str, Any]]:
    state = view.state
    assert state is not None
    oldest, soonest = now - timedelta(days=max_age_days), now + timedelta(days=window_days)
    found = []
    for row in rows_of(view):
        effective = state.current_version if row.version == VERSIONLESS else row.version
        info = state.version(effective)
        if info is None:
            continue
        why = []
        if info.created < oldest:
            why.append(f"created {(now - info.created).days} days ago (over {max_age_days})")
        if info.expires is not None and info.expires <= soonest:
            why.append(f"expires {iso_or_none(info.expires)} (within {window_days} days)")
        if why:
            found.append(
                {
                    "resourceId": row.resource_id,
                    "kind": row.kind,
                    "keyId": row.key_id,
                    "version": row.version,
                    "effectiveVersion": info.version,
                    "created": iso_or_none(info.created),
                    "expires": iso_or_none(info.expires),
                    "ageDays": (now - info.created).days,
                    "stale": why,
                    "action": row.action,
                    "notMoved": not_moved(row.action, row.reason, row.message, row.desired_version),
                }
            )
    return found


def last_runs(reconciler: Reconciler, keys: Iterable[KeyRef]) -> dict[str, dict[str, Any] | None]:
    """Each key's last run that held its lease (its audit chain head names the run), as the run
    store recorded it (status, times, counts; not the steps); None when no run ever did."""
    found: dict[str, dict[str, Any] | None] = {}
    for key in keys:
        _, run_id, _ = reconciler.audit.chain_head_entry(key)
        run = reconciler.runs.get(run_id) if run_id and reconciler.runs else None
        found[key.versionless_id] = {k: v for k, v in run.items() if k != "steps"} if run else None
    return found


def blob_name(now: datetime) -> str:
    return f"rotation-age/{now:%Y-%m-%d}.json"


def write_daily(service: Root, found: Inventory, now: datetime) -> tuple[str, AgeReport] | None:
    """The day's report as a create-only blob, from the sweep's own discovery; None when today's
    is already written (the sweep runs hourly; the first run of the day writes it)."""
    blob = service.clients.blobs().get_blob_client(REPORTS_CONTAINER, blob_name(now))
    if blob.exists():
        return None
    settings = service.settings
    estate = from_inventory(service.reconciler, found)
    report = build(
        estate, now=now, max_age_days=settings.report_max_age_days, window_days=settings.expiry_window_days
    )
    data = json.dumps(report.to_dict(), indent=1).encode()
    try:
        blob.upload_blob(data, overwrite=False)
    except ResourceExistsError:  # another sweep wrote it first
        return None
    return blob.blob_name, report


def sweep_report(service: Root, found: Inventory, trail: Any, now: datetime) -> None:
    """The sweep's daily evidence: write the report, audit what it found. Never fails the sweep
    (its job is queueing work); a failure is audited and the next hourly sweep tries again."""
    try:
        written = write_daily(service, found, now)
    except Exception as exc:  # noqa: BLE001 - reported, retried by the next sweep
        trail.record("age-report-failed", source="sweep", outcome="failed", message=str(exc)[:500])
        return
    if written is None:
        return
    name, report = written
    trail.record(
        "age-report-written",
        source="sweep",
        outcome="stale" if report.stale else "clean",
        message=f"{REPORTS_CONTAINER}/{name}",
        detail={
            "stale": len(report.stale),
            "retireCandidates": [c["keyId"] for c in report.retire_candidates][:50],
            "expiringConsumers": [c["resourceId"] for c in report.expiring_consumers][:50],
        },
    )
