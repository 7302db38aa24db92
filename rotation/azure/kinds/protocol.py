"""The protocol every consumer kind follows, and its optional members' defaults.

A `TargetKind` lists consumers in a subscription, reads one by id, and moves one to a key
version. Everything else (matching, planning, retrying, auditing) is shared and lives above,
and knows a kind only through this protocol; `all_kinds()` in the package is the one list of
them. Kind modules import this module, never the package, so the list and the kinds do not
import each other.

The members every kind has are in `TargetKind`. The optional ones (`KindDefaults`: the
api-version, how it names the key, what "verified" means, its remediation hints, how it
finds and handles a resource an interrupted write left missing, whether the service reports
itself healthy on its key version, how long the old version must stay enabled after a consumer
left it, whether the service refuses keys with an expiry) have defaults, read with the
functions below, so a kind that says nothing about them keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol, cast

from rotation.model.consumer import Consumer, Unreadable
from rotation.model.decisions import Check
from rotation.model.errors import Hint
from rotation.model.ids import KeyRef, ResourceId

if TYPE_CHECKING:
    from rotation.azure.clients import Clients
    from rotation.azure.retry import Deadline

KEY_ID = "key-id"  # the resource holds one key id, versioned or not (https://v.vault.azure.net/keys/k/ver)
KEY_PARTS = "parts"  # the resource holds vault URL, key name and version as separate fields
# Provisioning states in which a resource is in the middle of a change: wait, do not write.
# HDInsight says "InProgress" (its ClusterProvisioningState) where the others say "Updating".
BUSY_STATES = frozenset(
    {"updating", "creating", "deleting", "pending", "accepted", "repairing", "inprogress"}
)
FAILED_STATES = frozenset({"failed", "canceled"})


def is_busy(consumer: Consumer) -> bool:
    return (consumer.provisioning_state or "").lower() in BUSY_STATES


def has_failed(consumer: Consumer) -> bool:
    return (consumer.provisioning_state or "").lower() in FAILED_STATES


class TargetKind(Protocol):
    kind: str
    resource_type: str
    # Extra plan checks for this kind, evaluated after the common chain and before `update`
    # (each `(consumer, PolicyContext) -> Decision | None`, see rotation/run/policy.py).
    plan_checks: tuple[Check, ...]

    @property
    def arm_actions(self) -> tuple[str, ...]:
        """The ARM actions it needs: read, write and its long-running operations' status reads
        (infra/modules/custom-roles.bicep grants exactly these; a test holds them to it)."""

    def list(self, clients: Clients, subscription: str) -> Iterator[Consumer | Unreadable]:
        """Every resource of this kind in the subscription that uses a customer-managed key
        (a resource whose data the kind could not read: an Unreadable in its place)."""

    def read(self, clients: Clients, resource_id: ResourceId) -> Consumer | None:
        """The resource now, or None when it no longer exists or no longer uses a CMK."""

    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        """Move the resource to `to_key` (versioned) and return it as the service shows it after
        the write (None if the write answered nothing). Raises on failure; the caller verifies."""


@dataclass(frozen=True)
class ApplyContext:
    run_id: str
    actor: str
    deadline: Deadline | None = None  # the run's time budget: waits inside a write end with it


class KindDefaults:
    """The protocol's optional members and their defaults. Inherit it (ArmTargetKind does)
    and override what differs; a kind that does not inherit it gets the same defaults."""

    plan_checks: tuple[Check, ...] = ()
    api_version: str | None = None  # the ARM api-version its reads and writes use
    key_naming: str = KEY_ID  # KEY_ID or KEY_PARTS
    hints: tuple[Hint, ...] = ()  # remediation sentences for its permanent errors
    recreates_missing: bool = False  # `apply` can bring back a resource that is gone
    pending_store: str | None = None  # where it keeps what `pending` reads (named in reports)
    # The service refuses a key version that has an expiry (MySQL flexible servers): the renewal
    # never sets one on a key such a consumer uses, nor creates a version with one.
    forbids_key_expiry: bool = False

    def verified(self, shown: Consumer, to_key: KeyRef) -> bool:
        """Whether the resource as read back after the write holds the new version."""
        return shown.version == to_key.version

    def pending(self, clients: Clients, key: KeyRef) -> list[Consumer]:
        """Consumers of `key` whose resource an interrupted write left missing (marked
        `recreate_from_saved`); the plan finishes them first."""
        return []

    def healthy(self, consumer: Consumer) -> str | None:
        """Why the service's own CMK status says the resource is not healthy on the version it
        holds (e.g. a registry's versionedKeyIdentifier), or None when it is; the canary-wave
        gate (rotation/run/waves.py) asks it before a later wave starts."""
        return None

    def retire_grace(self, consumer: Consumer) -> timedelta:
        """How long after `consumer` left a version the service may still need it (its docs'
        wait before disabling the old version); the retire guard refuses to disable it sooner."""
        return timedelta(0)


_DEFAULTS = KindDefaults()


def hints_of(kind: object) -> tuple[Hint, ...]:
    return tuple(getattr(kind, "hints", ()))


def checks_of(kind: object) -> tuple[Check, ...]:
    return tuple(getattr(kind, "plan_checks", ()))


def recreates_missing(kind: object) -> bool:
    return bool(getattr(kind, "recreates_missing", False))


def verified(kind: object, shown: Consumer, to_key: KeyRef) -> bool:
    check = getattr(kind, "verified", _DEFAULTS.verified)
    return bool(check(shown, to_key))


def pending(kind: object, clients: Clients, key: KeyRef) -> list[Consumer]:
    find = getattr(kind, "pending", _DEFAULTS.pending)
    return list(find(clients, key))


def unhealthy(kind: object, consumer: Consumer) -> str | None:
    """The kind's `healthy` hook (default: healthy): why it is not, or None."""
    check = getattr(kind, "healthy", _DEFAULTS.healthy)
    reason = check(consumer)
    return None if reason is None else str(reason)


def retire_grace(kind: object, consumer: Consumer) -> timedelta:
    """The kind's `retire_grace` for this consumer (default: none)."""
    grace = getattr(kind, "retire_grace", _DEFAULTS.retire_grace)
    return cast("timedelta", grace(consumer))


def forbids_key_expiry(kind: object) -> bool:
    return bool(getattr(kind, "forbids_key_expiry", False))


def read_for_key(kind: TargetKind, clients: Clients, resource_id: ResourceId, key: KeyRef) -> Consumer | None:
    """The resource as a consumer of `key`: a kind whose resources hold several keys (an Event
    Hubs namespace) has `read_key`; for the others `read` is the same thing."""
    read_key = getattr(kind, "read_key", None)
    if read_key is not None:
        return cast("Consumer | None", read_key(clients, resource_id, key))
    return kind.read(clients, resource_id)
