"""What the Storage, Disk Encryption Set and SQL routes share: finding a resource by route
parts, listing by subscription or group, the identity names a provider checks against the
vault, and the provider's refusal when it cannot use a key (the key itself, or the vault
refusing the resource's identity: the 403 the provider met behind the scenes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .arm import ArmService, arm_error, json_body, key_problem, not_found
from .http import Request, Response
from .state import ARM_ID, World


def id_part(resource_id: str, part: str) -> str:
    """One part ("sub", "rg", "name", ...) of an ARM id; "" when the id has no such shape."""
    match = ARM_ID.match(resource_id)
    return match[part] if match else ""


def arm_path(sub: str, group: str, resource_type: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/{resource_type}/{name}".lower()


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
    id: str


class ArmResourceRoutes[R: HasId]:
    """List by subscription or group (paged) and GET by id for one resource type; subclasses add
    the writes. `pattern` is the provider/type part of the path as a regex."""

    TYPE: str

    def __init__(self, arm: ArmService, pattern: str) -> None:
        self.arm = arm
        self.world: World = arm.world
        root = r"/subscriptions/(?P<sub>[^/]+)"
        group = root + r"/resourceGroups/(?P<group>[^/]+)"
        self.item = group + "/providers/" + pattern + r"/(?P<name>[^/]+)"
        arm.router.add("GET", root + "/providers/" + pattern, self.list)
        arm.router.add("GET", group + "/providers/" + pattern, self.list)
        arm.router.add("GET", self.item, self.get)

    def resources(self) -> dict[str, R]:
        raise NotImplementedError

    def render(self, resource: R) -> dict[str, Any]:
        raise NotImplementedError

    def find(self, sub: str, group: str, name: str) -> R | None:
        return self.resources().get(arm_path(sub, group, self.TYPE, name))

    def list(self, request: Request, sub: str, group: str | None = None) -> Response:
        with self.world.lock:
            found = in_scope(self.resources().values(), lambda r: r.id, sub, group)
            items = [self.render(r) for r in found]
        return self.arm.page(request, items)

    def get(self, request: Request, sub: str, group: str, name: str) -> Response:
        with self.world.lock:
            resource = self.find(sub, group, name)
            if resource is None:
                return not_found(self.TYPE, name, group)
            return Response.json(200, self.render(resource))

    def target(
        self, request: Request, sub: str, group: str, name: str
    ) -> tuple[R, dict[str, Any]] | Response:
        """A write's resource and JSON body, or the error ARM answers. Caller holds world.lock."""
        body = json_body(request)
        if isinstance(body, Response):
            return body
        resource = self.find(sub, group, name)
        if resource is None:
            return not_found(self.TYPE, name, group)
        return resource, body
