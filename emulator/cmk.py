"""What the resource providers of the customer-managed-key kinds share.

`ArmResourceRoutes`: list by subscription or group (paged through `ArmService.page`) and GET
by id for one resource type, and the prologue of a write (body, resource or ARM's error).
Storage, Disk Encryption Set and SQL routes build on it with their own resource records;
`KeyedProvider` builds on it for the kinds kept as `KeyedResource` (Log Analytics and Data
Explorer clusters, Event Hubs and Service Bus namespaces, Cosmos DB accounts, AKS clusters)
and adds the write each of those services does (synchronous or a long-running operation
through `ArmService.start_operation`). Both check a key the way a resource provider does before
it takes one (`key_problem`: the key exists, is enabled, RSA, wrap/unwrap, and the vault lets
the identity in); each kind's module says how its body looks and where its write names the key.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .arm import ArmService, arm_error, identity_block, json_body, key_problem, not_found
from .http import Request, Response
from .state import ARM_ID, KeyedResource, World


def id_part(resource_id: str, part: str) -> str:
    """One part ("sub", "rg", "name", ...) of an ARM id; "" when the id has no such shape."""
    match = ARM_ID.match(resource_id)
    return match[part] if match else ""


def arm_path(sub: str, group: str, resource_type: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/{resource_type}/{name}".lower()


def key_url(vault_uri: Any, name: Any, version: Any) -> str:
    base = f"{str(vault_uri or '').rstrip('/')}/keys/{name or ''}"
    return f"{base}/{version}" if version else base


def key_parts(url: str) -> dict[str, str]:
    """{keyVaultUri, keyName, keyVersion} of a key id ('' for a versionless one)."""
    head, _, tail = url.partition("/keys/")
    name, _, version = tail.partition("/")
    return {"keyVaultUri": head, "keyName": name, "keyVersion": version}


def in_scope[T](resources: Iterable[T], id_of: Callable[[T], str], sub: str, group: str | None) -> list[T]:
    def wanted(resource_id: str) -> bool:
        match = ARM_ID.match(resource_id)
        if not match or match["sub"].lower() != sub.lower():
            return False
        return group is None or match["rg"].lower() == group.lower()

    return [r for r in resources if wanted(id_of(r))]


def identity_names(
    world: World, user_assigned: Iterable[str | None], system_principal: str | None
) -> tuple[str, ...]:
    """Every name the vault may know the resource's identity by (resource id and principal id)."""
    names = [n for i in user_assigned if i for n in (i, world.identity(i).principal_id)]
    return (*names, *([system_principal] if system_principal else []))


@dataclass(frozen=True)
class Refusals:
    """The provider's error codes for a key it cannot use and for a vault that refused it."""

    key_code: str
    access_code: str
    sizes: tuple[int, ...]


def refusal(
    world: World, key_url: str, identities: tuple[str, ...], codes: Refusals, who: str
) -> Response | None:
    """The provider's 400 when the key is unusable (type, size, state) or the vault refuses the
    identity; None when the key can be used. Caller holds world.lock."""
    problem = key_problem(world, key_url, sizes=codes.sizes)
    if problem:
        return arm_error(400, codes.key_code, f"{who} cannot use key '{key_url}'. {problem}")
    denied = key_problem(world, key_url, identities=identities)
    if denied:
        return arm_error(
            400,
            codes.access_code,
            f"{who} could not access key '{key_url}': Key Vault answered 403 Forbidden for its identity. "
            f"{denied}",
        )
    return None


class HasId(Protocol):
    """What every record a provider serves holds (the dataclasses in state.py)."""

    id: str
    location: str
    tags: dict[str, str]
    identities: list[str]
    system_principal: str | None


class ArmResourceRoutes[R: HasId]:
    """List by subscription or group (paged) and GET by id for one resource type (`TYPE`);
    with `WRITABLE`, a PATCH of a resource goes to the subclass's `update`."""

    TYPE: str
    WRITABLE = False  # False: the router answers a PATCH with 405
    BUSY_CODE = ""  # the 409's code for a write while a long-running one is in flight ("": allowed)

    def __init__(self, arm: ArmService) -> None:
        self.arm = arm
        self.world: World = arm.world
        pattern = self.TYPE.replace(".", r"\.")
        root = r"/subscriptions/(?P<sub>[^/]+)"
        group = root + r"/resourceGroups/(?P<group>[^/]+)"
        self.item = group + "/providers/" + pattern + r"/(?P<name>[^/]+)"
        arm.router.add("GET", root + "/providers/" + pattern, self.list)
        arm.router.add("GET", group + "/providers/" + pattern, self.list)
        arm.router.add("GET", self.item, self.get)
        arm.graph_sources[self.TYPE.lower()] = self.rendered_in
        if self.WRITABLE:
            arm.router.add("PATCH", self.item, self.patch)

    def patch(self, request: Request, sub: str, group: str, name: str) -> Response:
        with self.world.lock:
            found = self.target(request, sub, group, name)
            if isinstance(found, Response):
                return found
            resource, body = found
            return self.write(request, resource, body, name)

    def write(self, request: Request, resource: R, body: dict[str, Any], name: str) -> Response:
        """A PATCH of `resource` (found, not busy) with its JSON `body`. Caller holds world.lock."""
        raise NotImplementedError

    def envelope(self, resource: R, properties: dict[str, Any], **top: Any) -> dict[str, Any]:
        """The ARM body around a resource's `properties`: id, name, type, location, tags, the
        `identity` block when it has one, and any other top-level members (`top`)."""
        body: dict[str, Any] = {
            "id": resource.id,
            "name": id_part(resource.id, "name"),
            "type": self.TYPE,
            "location": resource.location,
            "tags": dict(resource.tags),
            **top,
            "properties": properties,
        }
        identity = identity_block(self.world, resource.identities, resource.system_principal)
        if identity:
            body["identity"] = identity
        return body

    def resources(self) -> Mapping[str, R]:
        """The world's records this provider serves, by lower-case id."""
        raise NotImplementedError

    def owns(self, resource: R) -> bool:
        """Whether a record in `resources()` is of this provider's type (a shared map holds several)."""
        return True

    def render(self, resource: R) -> dict[str, Any]:
        raise NotImplementedError

    def find(self, sub: str, group: str, name: str) -> R | None:
        found = self.resources().get(arm_path(sub, group, self.TYPE, name))
        return found if found is not None and self.owns(found) else None

    def list(self, request: Request, sub: str, group: str | None = None) -> Response:
        with self.world.lock:
            mine = [r for r in self.resources().values() if self.owns(r)]
            found = in_scope(mine, lambda r: r.id, sub, group)
            if group is None:  # a list answer that names resources of other subscriptions (a fault)
                for other in self.arm.settings.lists_also_answer:
                    found += in_scope(mine, lambda r: r.id, other, None) if other != sub.lower() else []
            items = [self.render(r) for r in found]
        return self.arm.page(request, items)

    def rendered_in(self, subscriptions: set[str]) -> builtins.list[dict[str, Any]]:
        """Every resource of this type in these subscriptions (lower-case ids), as a GET shows it."""
        with self.world.lock:
            mine = [r for r in self.resources().values() if self.owns(r)]
            return [self.render(r) for r in mine if id_part(r.id, "sub").lower() in subscriptions]

    def get(self, request: Request, sub: str, group: str, name: str) -> Response:
        with self.world.lock:
            resource = self.find(sub, group, name)
            if resource is None:
                return not_found(self.TYPE, name, group)
            return Response.json(200, self.render(resource))

    def target(
        self, request: Request, sub: str, group: str, name: str
    ) -> tuple[R, dict[str, Any]] | Response:
        """A write's resource and JSON body, or the error ARM answers (bad body, no such
        resource, another write still running). Caller holds world.lock."""
        body = json_body(request)
        if isinstance(body, Response):
            return body
        resource = self.find(sub, group, name)
        if resource is None:
            return not_found(self.TYPE, name, group)
        if self.BUSY_CODE and self.arm.operations.busy(resource.id):
            return arm_error(
                409, self.BUSY_CODE, f"Another operation is in progress on '{name}'. Retry later."
            )
        return resource, body


class Updatable(Protocol):
    """A record a long-running write marks `Updating` until its operation ends."""

    id: str
    location: str
    provisioning_state: str


def updating[U: Updatable](
    arm: ArmService,
    request: Request,
    resource: U,
    answer: tuple[str, str],
    apply: Callable[[], None],
    render: Callable[[U], dict[str, Any]],
    *,
    busy: str = "Updating",
) -> Response:
    """A long-running write's answer (`answer`: the provider's namespace and its shape): the
    resource `busy` (the provisioningState its service shows meanwhile) until ARM's operation
    ends, then `apply`; back as it was if it fails."""
    namespace, shape = answer
    previous = resource.provisioning_state
    resource.provisioning_state = busy

    def revert() -> None:
        resource.provisioning_state = previous

    return arm.answer_write(
        request,
        resource.id,
        namespace,
        resource.location,
        apply,
        revert,
        shape=shape,
        body=lambda: render(resource),
    )


class Refused(Exception):
    """A write the service refuses; carries the ARM error response."""

    def __init__(self, response: Response) -> None:
        super().__init__("refused")
        self.response = response


class KeyedProvider(ArmResourceRoutes[KeyedResource]):
    """A kind kept as `KeyedResource` in `world.keyed`: its module renders `properties` and
    says which keys and identity a write asks for (`requested`); the write is shared."""

    NAMESPACE: str
    WRITABLE = True  # False: GET and list only (the product never writes the kind)
    LONG_RUNNING = True
    WRITE_SHAPE = "async202"  # how a long-running write answers (settings.LRO_SHAPES)
    BUSY_CODE = "Conflict"
    ERROR_CODE = "KeyVaultAccessFailed"
    BUSY_STATE = "Updating"  # the provisioningState the service shows while its write runs

    # -- what each kind says ---------------------------------------------------------------
    def properties(self, resource: KeyedResource, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def requested(self, body: dict[str, Any], resource: KeyedResource) -> tuple[list[str], str | None]:
        """(key ids, key identity) the write asks for; raises Refused for a body it refuses."""
        raise NotImplementedError

    def decorate(self, body: dict[str, Any], resource: KeyedResource) -> None:
        """Add top-level members such as sku (kinds override)."""

    # -- shared ----------------------------------------------------------------------------
    def resources(self) -> Mapping[str, KeyedResource]:
        return self.world.keyed

    def owns(self, resource: KeyedResource) -> bool:
        return resource.type == self.TYPE

    def render(self, resource: KeyedResource) -> dict[str, Any]:
        body = self.envelope(resource, self.properties(resource, id_part(resource.id, "name")))
        self.decorate(body, resource)
        return body

    def also_requested(
        self, body: dict[str, Any], resource: KeyedResource, name: str
    ) -> Callable[[], None] | None:
        """What else the write changes besides the keys and identity `requested` names (checked
        here, raising Refused), applied with them when the write ends (kinds override)."""
        return None

    def write(self, request: Request, resource: KeyedResource, body: dict[str, Any], name: str) -> Response:
        try:
            key_ids, key_identity = self.requested(body, resource)
            self._check(resource, name, key_ids, key_identity)
            more = self.also_requested(body, resource, name)
        except Refused as refused:
            return refused.response
        return self._write(request, resource, key_ids, key_identity, more)

    def _check(
        self, resource: KeyedResource, name: str, key_ids: list[str], key_identity: str | None
    ) -> None:
        """Refused unless the identity is the resource's and can use every key (kinds reuse it)."""
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
        self,
        request: Request,
        resource: KeyedResource,
        key_ids: list[str],
        key_identity: str | None,
        more: Callable[[], None] | None = None,
    ) -> Response:
        def apply() -> None:
            resource.key_ids, resource.key_identity = list(key_ids), key_identity
            if more is not None:
                more()
            resource.provisioning_state = "Succeeded"

        if not self.LONG_RUNNING:
            apply()
            return Response.json(200, self.render(resource))
        answer = (self.NAMESPACE, self.WRITE_SHAPE)
        return updating(self.arm, request, resource, answer, apply, self.render, busy=self.BUSY_STATE)
