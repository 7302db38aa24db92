"""The shared half of the kinds whose key is written by a PUT of the whole resource as read
(Data Factory, Databricks): their PATCH cannot carry the key, so the write reads the resource
with its entity tag, moves the key in that document, leaves out the fields the service sets
itself, and PUTs the rest back with `If-Match`. Nothing the system does not know about is lost,
and a change someone made since the read is never overwritten: the service answers 412 and the
write reads and moves once more; a second 412 fails the step with `resource-changed`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import HttpResponseError

import rotation.azure.kinds.armkind as a
from rotation.azure.kinds.protocol import BUSY_STATES, ApplyContext
from rotation.model.consumer import Consumer
from rotation.model.errors import RotationError, TransientCondition
from rotation.model.ids import KeyRef

if TYPE_CHECKING:
    from rotation.azure.clients import Clients

PRECONDITION_FAILED = 412
ATTEMPTS = 2  # the first read, and one more after a 412


class ResourceChanged(RotationError):
    """The resource changed between our read and our PUT, twice in a row."""

    code = "resource-changed"


def without(document: Mapping[str, Any], paths: Iterable[tuple[str, ...]]) -> dict[str, Any]:
    """A deep copy of `document` without the fields at `paths` (the ones the service sets)."""
    out = copy.deepcopy(dict(document))
    for path in paths:
        node: Any = out
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def assignable_identity(document: dict[str, Any]) -> None:
    """ARM's identity block as a PUT takes it: the type and the user-assigned ids, without the
    principal and client ids the service reports (read-only)."""
    identity = document.get("identity")
    if not isinstance(identity, dict):
        return
    identity.pop("principalId", None)
    identity.pop("tenantId", None)
    users = identity.get("userAssignedIdentities")
    if isinstance(users, dict):
        identity["userAssignedIdentities"] = {str(k): {} for k in users}


class PutAsReadKind(a.ArmTargetKind):
    """A kind written by a PUT of the document as read, guarded by `If-Match`."""

    # Fields the service sets (read-only), as paths into the document: left out of the PUT.
    read_only: tuple[tuple[str, ...], ...] = (
        ("id",),
        ("name",),
        ("type",),
        ("etag",),
        ("eTag",),
        ("systemData",),
    )

    def moved(self, document: dict[str, Any], to_key: KeyRef) -> bool:
        """Move `to_key`'s pinned uses in `document` (in place) to its version; False when the
        document holds no pinned use of the key (nothing to write)."""
        raise NotImplementedError

    def put_body(self, resource: Mapping[str, Any], to_key: KeyRef) -> dict[str, Any] | None:
        """The PUT body: the resource as read, the key moved, read-only fields left out."""
        document = without(resource, self.read_only)
        assignable_identity(document)
        return document if self.moved(document, to_key) else None

    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        arm = clients.arm()
        for _ in range(ATTEMPTS):
            resource, etag = arm.get_tagged(consumer.target, self.api_version)
            if resource is None:
                return None
            state = str(a.properties(resource).get("provisioningState") or "")
            if state.lower() in BUSY_STATES:  # a document mid-change is not one to PUT back
                raise TransientCondition(f"{consumer.target} is {state}")
            body = self.put_body(resource, to_key)
            if body is None:  # moved already (by someone else, or our own first attempt)
                return self.shown(resource, to_key)
            headers = {"If-Match": etag} if etag else None
            try:
                return self.shown(arm.write("PUT", consumer.target, self.api_version, body, headers), to_key)
            except HttpResponseError as exc:
                if exc.status_code != PRECONDITION_FAILED:
                    raise
        raise ResourceChanged(
            f"{consumer.target} changed between our read and our PUT twice (412 Precondition Failed); "
            "nothing was overwritten: run the rotation again",
            remediation="Someone else is changing this resource: let that change finish, then run the "
            "rotation again (it reads the resource afresh).",
        )
