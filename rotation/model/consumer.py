"""One consumer of a key as a value: a resource that holds a customer-managed key, as its
consumer kind (rotation/azure/kinds/) read it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rotation.model.ids import KeyRef, ResourceId


@dataclass(frozen=True)
class Consumer:
    kind: str  # the consumer kind's name, e.g. "registry"
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
    # The resource is gone and its kind describes it from a saved spec (an interrupted
    # redeploy): the plan brings it back before anything else.
    recreate_from_saved: bool = False
    # Found in an index that lags ARM (Resource Graph): the write reads it through ARM first.
    lagging: bool = field(default=False, compare=False)

    @property
    def target(self) -> str:
        return str(self.resource_id)

    @property
    def version(self) -> str | None:
        return self.key.version


@dataclass(frozen=True)
class Unreadable:
    """A resource its kind listed but could not read (its data tripped the kind): reported
    where it was found, so the other resources of the list still count."""

    resource: str  # its id as the list answer gave it
    kind: str
    message: str
