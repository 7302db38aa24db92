"""Consumers of a key, one module per resource kind behind one protocol.

A `TargetKind` lists consumers in a subscription, reads one by id, and moves one to a key
version. Everything else (matching, planning, retrying, auditing) is shared and lives above.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from azure.core.exceptions import ResourceNotFoundError

from rotation.model.ids import KeyRef, ResourceId

if TYPE_CHECKING:
    from rotation.azure.clients import Clients


@dataclass(frozen=True)
class Consumer:
    kind: str  # "registry", "batch" or "containergroup"
    resource_id: ResourceId
    key: KeyRef  # as the resource holds it; version None means versionless
    location: str
    tags: Mapping[str, str] = field(default_factory=dict)
    identity: str | None = None  # the identity the resource uses for the key, as the resource names it
    identity_assigned: bool = True
    reconstructible: bool = True  # container groups: can the spec be rebuilt from a GET?
    provisioning_state: str | None = None
    # The service moves the resource to new key versions by itself (a versionless key id, or an
    # auto-rotation switch such as a Disk Encryption Set's rotationToLatestKeyVersionEnabled).
    follows_new_versions: bool = False
    # Kind-specific facts a kind's plan checks or write need (e.g. the other keys a namespace
    # holds); values only, never key material.
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def target(self) -> str:
        return str(self.resource_id)

    @property
    def version(self) -> str | None:
        return self.key.version


class TargetKind(Protocol):
    kind: str
    resource_type: str
    # Extra plan checks for this kind, evaluated after the common chain and before `update`
    # (each `(consumer, PolicyContext) -> Decision | None`, see rotation/core/policy.py).
    plan_checks: tuple[Any, ...]
    # Optional, not part of the protocol: `healthy(consumer) -> str | None`, the service's own
    # CMK status (e.g. a registry's versionedKeyIdentifier, a storage account's
    # keyCurrentVersionId); the canary-wave gate (rotation/core/waves.py) calls it when present.

    def list(self, clients: Clients, subscription: str) -> Iterator[Consumer]:
        """Every resource of this kind in the subscription that uses a customer-managed key."""

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


class ManagedTargetKind:
    """A kind listed and read through one management-client operations group (`list()` over a
    subscription, `get(group, name)`), mapped to Consumers by `to_consumer`."""

    kind: str
    resource_type: str
    plan_checks: tuple[Any, ...] = ()

    def operations(self, clients: Clients, subscription: str) -> Any:
        raise NotImplementedError

    def to_consumer(self, resource: Any) -> Consumer | None:
        raise NotImplementedError

    def list(self, clients: Clients, subscription: str) -> Iterator[Consumer]:
        for resource in self.operations(clients, subscription).list():
            consumer = self.to_consumer(resource)
            if consumer is not None:
                yield consumer

    def read(self, clients: Clients, resource_id: ResourceId) -> Consumer | None:
        try:
            resource = self.operations(clients, resource_id.subscription).get(
                resource_id.resource_group, resource_id.name
            )
        except ResourceNotFoundError:
            return None
        return self.to_consumer(resource)


def text(value: object) -> str:
    """An SDK enum or string as its wire value ("" for None)."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def tags_of(resource: object) -> dict[str, str]:
    return dict(getattr(resource, "tags", None) or {})


def all_kinds() -> list[TargetKind]:
    from rotation.azure.kinds.batch import BatchAccounts
    from rotation.azure.kinds.containergroup import ContainerGroups
    from rotation.azure.kinds.registry import Registries

    return [Registries(), BatchAccounts(), ContainerGroups()]
