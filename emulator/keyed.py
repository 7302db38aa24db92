"""The shared resource-provider half of the kinds kept as `KeyedResource` (Log Analytics and
Data Explorer clusters, Event Hubs and Service Bus namespaces, Cosmos DB accounts, AKS
clusters): list by subscription and by group (paged through `ArmService.page`), GET, and the
write each service does (synchronous or a long-running operation through
`ArmService.start_operation`), with the cross-service checks a resource provider makes before it
takes a key (`key_problem`: the key exists, is enabled, RSA, wrap/unwrap, and the vault lets the
identity in). Each kind's module says how its body looks and where its write names the key.
"""

from __future__ import annotations

import re
from typing import Any

from .arm import ArmService, arm_error, identity_block, json_body, key_problem, not_found
from .http import Request, Response
from .state import ARM_ID, KeyedResource, World


def key_url(vault_uri: Any, name: Any, version: Any) -> str:
    base = f"{str(vault_uri or '').rstrip('/')}/keys/{name or ''}"
    return f"{base}/{version}" if version else base


def key_parts(url: str) -> dict[str, str]:
    """{keyVaultUri, keyName, keyVersion} of a key id ('' for a versionless one)."""
    head, _, tail = url.partition("/keys/")
    name, _, version = tail.partition("/")
    return {"keyVaultUri": head, "keyName": name, "keyVersion": version}


def parts(resource_id: str) -> re.Match[str]:
    match = ARM_ID.match(resource_id)
    if match is None:  # ids are validated when a scenario loads
        raise ValueError(f"not an ARM id: {resource_id!r}")
    return match


class Refused(Exception):
    """A write the service refuses; carries the ARM error response."""

    def __init__(self, response: Response) -> None:
        super().__init__("refused")
        self.response = response


class KeyedProvider:
    TYPE: str
    NAMESPACE: str
    WRITABLE = True  # False: GET and list only (the product never writes the kind)
    LONG_RUNNING = True
    ERROR_CODE = "KeyVaultAccessFailed"

    def __init__(self, arm: ArmService) -> None:
        self.arm = arm
        self.world: World = arm.world
        provider, rtype = (part.replace(".", r"\.") for part in self.TYPE.split("/"))
        root = r"/subscriptions/(?P<sub>[^/]+)"
        group = root + r"/resourceGroups/(?P<group>[^/]+)"
        item = group + rf"/providers/{provider}/{rtype}/(?P<name>[^/]+)"
        arm.router.add("GET", root + rf"/providers/{provider}/{rtype}", self.list_all)
        arm.router.add("GET", group + rf"/providers/{provider}/{rtype}", self.list_all)
        arm.router.add("GET", item, self.get)
        if self.WRITABLE:  # otherwise the router answers a write with 405
            arm.router.add("PATCH", item, self.update)

    # -- what each kind says ---------------------------------------------------------------
    def properties(self, resource: KeyedResource, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def requested(self, body: dict[str, Any], resource: KeyedResource) -> tuple[list[str], str | None]:
        """(key ids, key identity) the write asks for; raises Refused for a body it refuses."""
        raise NotImplementedError

    def decorate(self, body: dict[str, Any], resource: KeyedResource) -> None:
        """Add top-level members such as sku (kinds override)."""

    # -- shared ----------------------------------------------------------------------------
    def render(self, resource: KeyedResource) -> dict[str, Any]:
        name = parts(resource.id)["name"]
        body: dict[str, Any] = {
            "id": resource.id,
            "name": name,
            "type": self.TYPE,
            "location": resource.location,
            "tags": dict(resource.tags),
            "properties": self.properties(resource, name),
        }
        identity = identity_block(self.world, resource.identities, resource.system_principal)
        if identity:
            body["identity"] = identity
        self.decorate(body, resource)
        return body

    def _find(self, sub: str, group: str, name: str) -> KeyedResource | None:
        found = self.world.keyed.get(
            f"/subscriptions/{sub}/resourceGroups/{group}/providers/{self.TYPE}/{name}".lower()
        )
        return found if found is not None and found.type == self.TYPE else None

    def list_all(self, request: Request, sub: str, group: str | None = None) -> Response:
        with self.world.lock:
            items = []
            for resource in self.world.keyed.values():
                match = parts(resource.id)
                if resource.type != self.TYPE or match["sub"].lower() != sub.lower():
                    continue
                if group is None or match["rg"].lower() == group.lower():
                    items.append(self.render(resource))
        return self.arm.page(request, items)

    def get(self, request: Request, sub: str, group: str, name: str) -> Response:
        with self.world.lock:
            resource = self._find(sub, group, name)
            if resource is None:
                return not_found(self.TYPE, name, group)
            return Response.json(200, self.render(resource))

    def update(self, request: Request, sub: str, group: str, name: str) -> Response:
        body = json_body(request)
        if isinstance(body, Response):
            return body
        with self.world.lock:
            resource = self._find(sub, group, name)
            if resource is None:
                return not_found(self.TYPE, name, group)
            if self.arm.operations.busy(resource.id):
                return arm_error(
                    409, "Conflict", f"Another operation is in progress on '{name}'. Retry later."
                )
            try:
                key_ids, key_identity = self.requested(body, resource)
                self._check(resource, name, key_ids, key_identity)
            except Refused as refused:
                return refused.response
            return self._write(request, resource, key_ids, key_identity)

    def _check(
        self, resource: KeyedResource, name: str, key_ids: list[str], key_identity: str | None
    ) -> None:
        if key_identity and key_identity.lower() not in {i.lower() for i in resource.identities}:
            raise Refused(
                arm_error(
                    400,
                    "IdentityNotAssigned",
                    f"The identity '{key_identity}' is not assigned to '{name}'. Assign it first.",
                )
            )
        if not key_identity and not resource.system_principal:
            raise Refused(
                arm_error(
                    400, "IdentityNotAssigned", f"'{name}' has no managed identity to reach the key with."
                )
            )
        names = (
            (key_identity, self.world.identity(key_identity).principal_id)
            if key_identity
            else (resource.system_principal or "",)
        )
        for url in key_ids:
            problem = key_problem(self.world, url, identities=names)
            if problem:
                raise Refused(
                    arm_error(400, self.ERROR_CODE, f"'{name}' could not use key '{url}'. {problem}")
                )

    def _write(
        self, request: Request, resource: KeyedResource, key_ids: list[str], key_identity: str | None
    ) -> Response:
        def apply() -> None:
            resource.key_ids, resource.key_identity = list(key_ids), key_identity
            resource.provisioning_state = "Succeeded"

        if not self.LONG_RUNNING:
            apply()
            return Response.json(200, self.render(resource))
        previous = resource.provisioning_state
        resource.provisioning_state = "Updating"

        def revert() -> None:
            resource.provisioning_state = previous

        headers = self.arm.start_operation(
            request, resource.id, self.NAMESPACE, resource.location, apply, revert
        )
        return Response.empty(202, headers)  # the status URL, then a GET of the resource, tell the rest
