"""Key maintenance that precedes propagation, run under the key's lease:

- near-expiry: make one new version, unless a newer usable version already exists, the event
  is stale (the version is no longer near expiry), or the key's own rotation policy rotates
  (`ROTATION_DEFER_TO_KEY_POLICY`). Rotate is a POST and never retried blindly: after an
  unclear failure the versions are listed and any version that appeared is taken as the one
  this run made.
- "the desired version has an expiry": every run, so the next near-expiry event comes even if
  a crash fell between creating a version and setting its expiry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rotation.azure.retry import Deadline, RetryPolicy, call, classify
from rotation.azure.vault import (
    RotationPolicyInfo,
    read_rotation_policy,
    rotate_version,
    set_expiry,
    versions_not_in,
)
from rotation.config import Settings
from rotation.model.errors import ErrorInfo, ServiceFailed
from rotation.model.events import NEAR_EXPIRY
from rotation.model.ids import KeyRef
from rotation.model.keystate import KeyState, VersionInfo
from rotation.model.request import RotationRequest
from rotation.storage.audit import AuditTrail
from rotation.storage.ledger import Lease

if TYPE_CHECKING:
    from azure.keyvault.keys import KeyClient


class RenewalFailed(ServiceFailed):
    """The near-expiry version or the expiry step failed: nothing is planned on a guess."""


@dataclass
class Renewal:
    """What maintenance did: the new version (if any), and whether the key state changed."""

    created: VersionInfo | None = None
    changed: bool = False
    notes: list[str] = field(default_factory=list)


def _days(duration: str | None) -> int | None:
    """Days in a Key Vault ISO 8601 duration (P90D, P1Y, P18M); None if absent or odd."""
    if not duration or not duration.startswith("P") or "T" in duration:
        return None
    total, number = 0, ""
    for char in duration[1:]:
        if char.isdigit():
            number += char
            continue
        if not number:
            return None
        total += int(number) * {"Y": 365, "M": 30, "W": 7, "D": 1}.get(char, 0)
        number = ""
    return total or None


class KeyMaintenance:
    def __init__(
        self,
        settings: Settings,
        client: KeyClient,
        key: KeyRef,
        trail: AuditTrail,
        retry: RetryPolicy,
        lease: Lease | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        self.settings, self.client, self.key, self.trail, self.retry = settings, client, key, trail, retry
        self.lease = lease
        self.deadline = deadline  # the run's: no retry sleeps past it
        # Consumers whose service refuses a key with an expiry (kinds' `forbids_key_expiry`, from
        # the run's discovery): no expiry is set and no version made with one while any uses the key.
        self.no_expiry: tuple[str, ...] = ()
        self.targeted = False  # the run was limited to targets: not every consumer was seen
        self._policy: RotationPolicyInfo | None = None

    def policy(self) -> RotationPolicyInfo:
        if self._policy is None:
            self._policy = call(
                lambda: read_rotation_policy(self.client, self.key),
                policy=self.retry,
                deadline=self.deadline,
                what=f"read rotation policy of {self.key.versionless_id}",
            )
        return self._policy

    def run(self, request: RotationRequest, state: KeyState, *, dry_run: bool) -> Renewal:
        renewal = Renewal()
        if request.event_type == NEAR_EXPIRY:
            self._near_expiry(request, state, renewal, dry_run)
        self.targeted = request.targets is not None
        if not renewal.created:
            self._ensure_expiry(state.desired, renewal, dry_run)
        else:
            self._ensure_expiry(renewal.created, renewal, dry_run)
        return renewal

    # -- near expiry -------------------------------------------------------------------------------
    def _near_expiry(
        self, request: RotationRequest, state: KeyState, renewal: Renewal, dry_run: bool
    ) -> None:
        expiring = state.version(request.event_version) if request.event_version else state.desired
        desired = state.desired
        if (
            desired is not None
            and expiring is not None
            and desired.version != expiring.version
            and state.is_newer(desired, expiring)
        ):
            self.trail.record(
                "version-exists",
                fromVersion=expiring.version,
                toVersion=desired.version,
                message="a newer usable version already exists; nothing created",
            )
            return
        # Key Vault notifies per the key's policy (P30D by default, or longer); a version counts as
        # near expiry within the larger of that and the configured window, plus a day or two of
        # slack for late delivery. Anything further out is a stale or repeated event.
        notify_days = _days(self.policy().notify_before_expiry) or 0
        window = timedelta(days=max(self.settings.expiry_window_days, notify_days) + 2)
        subject = expiring or desired
        if (
            subject is not None
            and subject.enabled
            and (subject.expires is None or subject.expires > datetime.now(UTC) + window)
        ):
            self.trail.record(
                "not-near-expiry",
                fromVersion=subject.version,
                message=f"{subject.version} does not expire within {self.settings.expiry_window_days} "
                "days (a stale or repeated event); nothing created",
            )
            return
        policy = self.policy()
        if self.no_expiry and _days(policy.expires_after):
            why = (
                f"the key's rotation policy gives new versions an expiry ({policy.expires_after}) and "
                f"{self._refusers()}: remove expiryTime from the policy, or move them to another key"
            )
            renewal.notes.append(f"no version created: {why}")
            self.trail.record("version-create-skipped", reason="expiry-forbidden", message=why)
            return
        if policy.has_rotate_action and self.settings.defer_to_key_policy:
            self.trail.record(
                "deferred-to-key-policy",
                message="the key's rotation policy rotates it; Key Vault "
                "makes the version (ROTATION_DEFER_TO_KEY_POLICY)",
            )
            return
        if dry_run:
            renewal.notes.append("would create a new key version (near expiry)")
            self.trail.record("version-would-be-created", outcome="planned")
            return
        renewal.created = self._rotate(state)
        renewal.changed = True

    def _rotate(self, state: KeyState) -> VersionInfo:
        known = {v.version for v in state.versions}
        # Fence: the lease must still be ours at the moment of the only non-idempotent write.
        if self.lease is not None and not self.lease.renew():
            info = ErrorInfo(False, False, 409, "LeaseLost", "another run took over the key's lease")
            self.trail.record(
                "version-create-skipped", outcome="failed", errorCode="LeaseLost", message=info.message
            )
            raise RenewalFailed(f"rotating {self.key.versionless_id}", info)
        self.trail.record("version-create-attempt", message="rotating the key (one POST)")
        self.trail.flush()  # the intent is on record before the only non-idempotent write
        try:
            created = rotate_version(self.client, self.key)
        except Exception as exc:
            info = classify(exc)
            if not info.transient:
                self.trail.record(
                    "version-create-failed", outcome="failed", errorCode=info.code, message=info.summary()
                )
                raise RenewalFailed(f"rotating {self.key.versionless_id}", info) from exc
            # Unclear: the POST may have happened. Look, do not repeat it.
            appeared = call(
                lambda: versions_not_in(self.client, self.key, known),
                policy=self.retry,
                deadline=self.deadline,
                what=f"list versions of {self.key.versionless_id}",
            )
            if not appeared:
                self.trail.record(
                    "version-create-failed",
                    outcome="failed",
                    errorCode=info.code,
                    message=f"{info.summary()}; no new version appeared",
                )
                raise RenewalFailed(f"rotating {self.key.versionless_id}", info) from exc
            created = appeared[-1]
            self.trail.record(
                "version-create-unclear",
                message=f"{info.summary()}; version {created.version} appeared, taken as this run's",
            )
        self.trail.record(
            "version-created",
            toVersion=created.version,
            outcome="created",
            detail={"expires": created.expires.isoformat() if created.expires else None},
        )
        return created

    # -- expiry --------------------------------------------------------------------------------------
    def _refusers(self) -> str:
        """Who refuses a key with an expiry, for the note and the audit record."""
        names = ", ".join(t.rsplit("/", 1)[-1] for t in self.no_expiry[:5])
        more = f" and {len(self.no_expiry) - 5} more" if len(self.no_expiry) > 5 else ""
        return (
            f"{len(self.no_expiry)} consumer(s) of this key ({names}{more}) refuse a key with an expiration "
            "date (MySQL flexible servers: 'the expiration date isn't set')"
        )

    def _expiry_refused(self) -> tuple[str, str] | None:
        """(reason, why) no expiry may be set on the key now; None: it may."""
        if self.no_expiry:
            return "expiry-forbidden", self._refusers()
        if self.targeted:
            return "consumers-unseen", (
                "the run was limited to targets, so not every consumer of the key was seen, and a MySQL flexible "
                "server refuses a key with an expiration date; the next full run (an event, the sweep) sets it"
            )
        return None

    def _ensure_expiry(self, version: VersionInfo | None, renewal: Renewal, dry_run: bool) -> None:
        if version is None or version.expires is not None:
            return
        refused = self._expiry_refused()
        if refused:
            reason, why = refused[0], f"no expiry set on {version.version}: {refused[1]}"
            renewal.notes.append(why)
            self.trail.record("expiry-not-set", toVersion=version.version, reason=reason, message=why)
            return
        days = _days(self.policy().expires_after) or self.settings.new_version_expiry_days
        expires = datetime.now(UTC) + timedelta(days=days)
        if dry_run:
            renewal.notes.append(f"would set an expiry on {version.version} ({days} days)")
            return
        call(
            lambda: set_expiry(self.client, self.key, version.version, expires),
            policy=self.retry,
            deadline=self.deadline,
            what=f"set expiry on {version.version}",
        )
        renewal.changed = True
        self.trail.record(
            "expiry-set",
            toVersion=version.version,
            outcome="updated",
            message=f"expires {expires.date().isoformat()} ({days} days)",
        )
