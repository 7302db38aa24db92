"""The estate's inventory: who uses which key version, and what a run would do about it.

One discovery (one paged ARM list per kind and subscription) serves every key; then each key
in an allowed vault is read once (versions, desired version, rotation policy) and planned with
the same policy chain a run uses, so the `action` column is what a run would do now. Keys in
vaults outside ROTATION_ALLOWED_VAULTS are listed as `outside` from ARM alone: this system
never calls those vaults, let alone writes to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from rotation.azure.discovery import DiscoveryError, Inventory, list_consumers
from rotation.azure.kinds import Consumer
from rotation.azure.retry import Deadline, call
from rotation.azure.vault import RotationPolicyInfo, read_rotation_policy
from rotation.config import Settings
from rotation.model.ids import HOST_NAME, KeyRef
from rotation.model.keystate import KeyState
from rotation.model.results import Plan
from rotation.model.times import iso_or_none
from rotation.run.gather import Unreachable
from rotation.run.reconcile import Reconciler
from rotation.run.reverts import marks
from rotation.run.waves import wave_of

if TYPE_CHECKING:
    from rotation.azure.clients import Clients

VERSIONLESS = "versionless"
OUTSIDE_REASON = "vault-not-allowed"
COLUMNS = (  # a row's fields, in the order CSV and tables show them
    "kind",
    "resourceId",
    "keyId",
    "version",
    "followsNewVersions",
    "desiredVersion",
    "action",
    "reason",
    "identity",
    "outside",
    "wave",
    "reverted",
)


class InvalidFilter(ValueError):
    """A --vault / --kind filter that is not a hostname or a known kind."""


@dataclass(frozen=True)
class Filters:
    vault: str | None = None  # a vault or Managed HSM host
    key: KeyRef | None = None  # versionless
    kind: str | None = None

    @classmethod
    def parse(cls, vault: str | None, key: KeyRef | None, kind: str | None, kinds: Iterable[str]) -> Filters:
        host = vault.strip().lower() if vault else None
        if host is not None and not HOST_NAME.match(host):
            raise InvalidFilter(f"vault: {vault!r} is not a vault host such as contoso-cmk.vault.azure.net")
        known = sorted(kinds)
        if kind is not None and kind not in known:
            raise InvalidFilter(f"kind: {kind!r} is not one of {', '.join(known)}")
        return cls(host, key.versionless() if key else None, kind)

    def wants(self, consumer: Consumer) -> bool:
        if self.vault and consumer.key.vault_host != self.vault:
            return False
        return not (self.key and not consumer.key.same_key(self.key))


@dataclass(frozen=True)
class Row:
    """One consumer."""

    kind: str
    resource_id: str
    key_id: str  # versionless
    version: str  # held, or "versionless"
    follows_new_versions: bool
    desired_version: str | None
    action: str | None  # what a run would do now (None: outside, or the key could not be read)
    reason: str | None
    message: str
    identity: str | None
    outside: bool
    wave: str
    reverted: dict[str, Any] | None = None  # a deployment put it back on an older version (run/reverts.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "resourceId": self.resource_id,
            "keyId": self.key_id,
            "version": self.version,
            "followsNewVersions": self.follows_new_versions,
            "desiredVersion": self.desired_version,
            "action": self.action,
            "reason": self.reason,
            "message": self.message,
            "identity": self.identity,
            "outside": self.outside,
            "wave": self.wave,
            "reverted": self.reverted,
        }


@dataclass(frozen=True)
class KeyView:
    """One key: its state and plan (allowed vaults), or why there is none."""

    key: KeyRef
    consumers: tuple[Consumer, ...]
    outside: bool
    state: KeyState | None = None
    plan: Plan | None = None
    policy: RotationPolicyInfo | None = None
    error: dict[str, Any] | None = None
    discovery_errors: tuple[DiscoveryError, ...] = ()  # scopes that could not be listed
    reverts: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # by lower-cased resource id

    def to_dict(self) -> dict[str, Any]:
        state = self.state
        held = holders_by_version(self.consumers, state)
        desired = state.desired if state else None
        return {
            "keyId": self.key.versionless_id,
            "outside": self.outside,
            "consumers": len(self.consumers),
            "currentVersion": state.current_version if state else None,
            "desiredVersion": desired.version if desired else None,
            "blockedReason": state.blocked_reason if state else None,
            "expires": iso_or_none(desired.expires) if desired else None,
            "rotationPolicy": _policy_dict(self.policy),
            "versions": [
                {
                    "version": v.version,
                    "enabled": v.enabled,
                    "created": iso_or_none(v.created),
                    "notBefore": iso_or_none(v.not_before),
                    "expires": iso_or_none(v.expires),
                    "consumers": len(held.get(v.version, ())),
                }
                for v in (state.versions if state else ())
            ],
            "error": self.error,
        }


class Root(Protocol):
    """What estate-wide work (inventory, report, retire guard, sweep) needs from the
    composition root, rotation/service.py's Service; each adds the stores it writes."""

    @property
    def settings(self) -> Settings: ...
    @property
    def clients(self) -> Clients: ...
    @property
    def reconciler(self) -> Reconciler: ...


@dataclass(frozen=True)
class Estate:
    keys: tuple[KeyView, ...]
    discovery_errors: tuple[dict[str, Any], ...] = field(default=())
    counted_kind: str | None = None  # --kind: the keys' consumer counts are of this kind only

    @property
    def rows(self) -> list[Row]:
        return [row for view in self.keys for row in rows_of(view)]

    @property
    def unreachable(self) -> bool:
        return any(e.get("unreachable") for e in self.discovery_errors) or any(
            v.error and v.error.get("unreachable") for v in self.keys
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "consumers": [r.to_dict() for r in self.rows],
            "keys": [v.to_dict() for v in self.keys],
            "discoveryErrors": list(self.discovery_errors),
            "countedKind": self.counted_kind,
        }


def holders_by_version(consumers: Iterable[Consumer], state: KeyState | None) -> dict[str, list[Consumer]]:
    """Version -> the consumers that hold it. A versionless consumer holds the key's current
    version (that is the one its service uses)."""
    held: dict[str, list[Consumer]] = {}
    for consumer in consumers:
        version = consumer.version or (state.current_version if state else None)
        if version:
            held.setdefault(version.lower(), []).append(consumer)
    return held


def rows_of(view: KeyView) -> list[Row]:
    if view.plan is not None:
        desired = view.plan.desired_version
        return [
            Row(
                s.kind,
                s.target,
                view.key.versionless_id,
                s.from_version or VERSIONLESS,
                s.consumer.follows_new_versions,
                desired,
                s.action,
                s.reason,
                s.message,
                s.consumer.identity,
                False,
                s.wave,
                view.reverts.get(s.target.lower()),
            )
            for s in view.plan.steps
        ]
    reason, message = (
        (OUTSIDE_REASON, "vault not in ROTATION_ALLOWED_VAULTS: listed only, never read or written")
        if view.outside
        else ("key-unreadable", (view.error or {}).get("message") or "the key could not be read")
    )
    return [
        Row(
            c.kind,
            c.target,
            view.key.versionless_id,
            c.version or VERSIONLESS,
            c.follows_new_versions,
            None,
            None,
            reason,
            message,
            c.identity,
            view.outside,
            wave_of(c.tags),
        )
        for c in view.consumers
    ]


def collect(reconciler: Reconciler, filters: Filters = Filters(), deadline: Deadline | None = None) -> Estate:
    """One discovery for every key, then each allowed key read and planned (in parallel)."""
    settings = reconciler.settings
    kinds = [k for k in reconciler.kinds.values() if filters.kind in (None, k.kind)]
    found = list_consumers(
        reconciler.clients,
        settings.subscriptions,
        policy=reconciler.retry,
        deadline=deadline,
        kinds=kinds,
        workers=settings.concurrency,
        discovery=settings.discovery,
    )
    return from_inventory(reconciler, found, filters, deadline)


def from_inventory(
    reconciler: Reconciler, found: Inventory, filters: Filters = Filters(), deadline: Deadline | None = None
) -> Estate:
    """The estate from a discovery already made (the sweep passes its own)."""
    wanted = Inventory(tuple(c for c in found.consumers if filters.wants(c)), found.errors)
    keys = sorted(wanted.keys().values(), key=lambda k: k.versionless_id)

    def view(key: KeyRef) -> KeyView:
        return view_of(reconciler, key, wanted.for_key(key), deadline)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(keys)))) as pool:
        views = tuple(pool.map(view, keys))
    errors = tuple(
        {
            "scope": e.scope,
            "kind": e.kind,
            "status": e.error.status,
            "code": e.error.code,
            "message": e.error.message,
            "unreachable": e.error.unreachable,
        }
        for e in found.errors
    )
    return Estate(views, errors, filters.kind)


def view_of(reconciler: Reconciler, key: KeyRef, found: Inventory, deadline: Deadline | None) -> KeyView:
    """One key from its consumers: read and planned when its vault is allowed."""
    consumers, errors = tuple(found.consumers), tuple(found.errors)
    if not reconciler.settings.vault_allowed(key.vault_host):
        return KeyView(key, consumers, outside=True, discovery_errors=errors)
    try:
        state = reconciler.read_state(key, deadline)
    except Unreachable as exc:
        error = {
            "status": exc.info.status,
            "code": exc.info.code,
            "message": str(exc),
            "unreachable": exc.info.unreachable,
        }
        return KeyView(key, consumers, outside=False, error=error, discovery_errors=errors)
    plan = reconciler.plan_from(key, state, Inventory(consumers), None)
    reverts = marks(
        state,
        consumers,
        reconciler.reverts.written(key),
        datetime.now(UTC),
        reconciler.settings.revert_guard_days,
    )
    policy = _policy(reconciler, key, deadline)
    return KeyView(key, consumers, False, state, plan, policy, None, errors, reverts)


def _policy(reconciler: Reconciler, key: KeyRef, deadline: Deadline | None) -> RotationPolicyInfo | None:
    try:
        return call(
            lambda: read_rotation_policy(reconciler.clients.keys(key.vault_url), key),
            policy=reconciler.retry,
            deadline=deadline,
            what=f"read the rotation policy of {key.versionless_id}",
        )
    except Exception:  # noqa: BLE001 - the policy is context; its absence is shown (null), not fatal
        return None


def _policy_dict(policy: RotationPolicyInfo | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "expiresAfter": policy.expires_after,
        "rotates": policy.has_rotate_action,
        "notifyBeforeExpiry": policy.notify_before_expiry,
    }
