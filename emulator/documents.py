"""Resource providers whose key is written by a PUT of the whole resource (Data Factory,
Databricks): what they share.

A resource is kept as the document last put (`ArmDocument`): every field is kept, modelled or
not, so a product that drops a field in its PUT loses it here as it would in Azure, and a test
sees it gone. A GET answers the document with the fields the service sets (the kind's `served`)
and its entity tag in the `ETag` header; a PUT with an `If-Match` naming another tag is refused
412 (`PreconditionFailed`), a PUT without one is unconditional, as ARM's contract says. The
keys a PUT names are checked as the service checks them (cmk.refusal) before anything changes.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from typing import Any

from .arm import ArmService, arm_error, not_found
from .cmk import ArmResourceRoutes, Refusals, Refused, refusal, updating
from .http import Request, Response
from .state import ArmDocument, stable_uuid

# Top-level members the envelope renders from the record, never from the stored document.
ENVELOPE = ("id", "name", "type", "location", "tags", "identity", "etag", "eTag", "systemData")


def new_etag() -> str:
    return f'"{uuid.uuid4()}"'


def identities_of(body: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The user-assigned identity ids and whether a system-assigned one is asked for."""
    identity = body.get("identity")
    if not isinstance(identity, dict):
        return [], False
    users = identity.get("userAssignedIdentities")
    system = "systemassigned" in str(identity.get("type") or "").replace(" ", "").lower()
    return ([str(i) for i in users] if isinstance(users, dict) else []), system


class DocumentProvider(ArmResourceRoutes[ArmDocument]):
    """GET, list and a PUT guarded by If-Match for one type kept as `ArmDocument`."""

    NAMESPACE: str
    LONG_RUNNING = False  # True: a PUT answers 202 + Location and takes effect when it ends
    WRITE_SHAPE = "location202"
    BUSY_CODE = "Conflict"
    ETAG_FIELD: str | None = None  # the body member that repeats the tag ("eTag" for Data Factory)
    READ_ONLY: tuple[str, ...] = ("provisioningState",)  # properties the service sets; a PUT's are ignored
    CODES = Refusals("BadRequest", "BadRequest", (2048, 3072, 4096))

    def __init__(self, arm: ArmService) -> None:
        super().__init__(arm)
        arm.router.add("PUT", self.item, self.put)

    # -- what each kind says ---------------------------------------------------------------
    def served(self, resource: ArmDocument, properties: dict[str, Any]) -> None:
        """Add the properties the service sets (in place)."""

    def keys_in(
        self, document: dict[str, Any], resource: ArmDocument
    ) -> list[tuple[str, tuple[str, ...], str]]:
        """(key url, identity names the vault may know, who) for each key a document names (a
        versionless one: its newest version is checked); raises Refused for a document refused."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def resources(self) -> Mapping[str, ArmDocument]:
        return self.world.documents

    def owns(self, resource: ArmDocument) -> bool:
        return resource.type == self.TYPE

    def render(self, resource: ArmDocument) -> dict[str, Any]:
        document = copy.deepcopy(resource.document)
        properties = document.pop("properties", None) or {}
        properties["provisioningState"] = resource.provisioning_state
        self.served(resource, properties)
        body = self.envelope(resource, properties, **document)
        if self.ETAG_FIELD:
            body[self.ETAG_FIELD] = resource.etag
        return body

    def get(self, request: Request, sub: str, group: str, name: str) -> Response:
        with self.world.lock:
            resource = self.find(sub, group, name)
            if resource is None:
                return not_found(self.TYPE, name, group)
            return Response.json(200, self.render(resource), {"ETag": resource.etag})

    def put(self, request: Request, sub: str, group: str, name: str) -> Response:
        with self.world.lock:
            found = self.target(request, sub, group, name)
            if isinstance(found, Response):
                return found
            resource, body = found
            wanted = request.headers.get("if-match")
            if wanted and wanted not in ("*", resource.etag):
                return arm_error(
                    412,
                    "PreconditionFailed",
                    f"The ETag '{wanted}' does not match '{name}''s current ETag: it changed since it was read.",
                )
            try:
                self.check(body, resource, name)
            except Refused as refused:
                return refused.response
            return self.store(request, resource, body)

    def check(self, body: dict[str, Any], resource: ArmDocument, name: str) -> None:
        if (
            str(body.get("location") or "").replace(" ", "").lower()
            != resource.location.replace(" ", "").lower()
        ):
            raise Refused(arm_error(400, "LocationRequired", f"'{name}' stays in {resource.location}."))
        users, system = identities_of(body)
        principal = (resource.system_principal or stable_uuid("system:" + resource.id)) if system else None
        candidate = ArmDocument(resource.id, resource.type, resource.location, {}, users, {}, "", principal)
        for url, identities, who in self.keys_in(body, candidate):
            response = refusal(self.world, url, identities, self.CODES, who)
            if response is not None:
                raise Refused(response)

    def store(self, request: Request, resource: ArmDocument, body: dict[str, Any]) -> Response:
        document = {k: copy.deepcopy(v) for k, v in body.items() if k not in ENVELOPE}
        properties = document.get("properties")
        if isinstance(properties, dict):
            for field in self.READ_ONLY:
                properties.pop(field, None)
        users, system = identities_of(body)

        def apply() -> None:
            resource.document, resource.tags = document, dict(body.get("tags") or {})
            resource.identities = users
            resource.system_principal = (
                (resource.system_principal or stable_uuid("system:" + resource.id)) if system else None
            )
            resource.provisioning_state = "Succeeded"

        resource.etag = new_etag()
        if not self.LONG_RUNNING:
            apply()
            return Response.json(200, self.render(resource), {"ETag": resource.etag})
        return updating(self.arm, request, resource, (self.NAMESPACE, self.WRITE_SHAPE), apply, self.render)
