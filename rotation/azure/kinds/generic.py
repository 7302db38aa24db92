"""What the kinds written against generic ARM calls share: list and read by resource id with
the kind's api-version, the identity a resource uses for its key, and the key-type check each
service needs (the key types and RSA sizes it accepts, from its documentation)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from rotation.azure.kinds import ApplyContext, Consumer, KindDefaults
from rotation.model.decisions import BLOCKED, Decision, PolicyContext
from rotation.model.errors import Hint
from rotation.model.ids import KeyRef, ResourceId

if TYPE_CHECKING:
    from rotation.azure.clients import Clients


class ArmTargetKind(KindDefaults):
    """A kind listed with `GET /subscriptions/{s}/providers/{type}` and read with a GET of its id."""

    kind: str
    resource_type: str
    api_version: str
    # Error code (lower case) -> what a person should do about a 400 from the service ("": any code).
    remediation: Mapping[str, str] = {}

    @property
    def hints(self) -> tuple[Hint, ...]:  # type: ignore[override]  # derived from `remediation`
        return tuple(Hint(400, code or None, text) for code, text in self.remediation.items())

    def to_consumer(self, clients: Clients, resource: dict[str, Any]) -> Consumer | None:
        raise NotImplementedError

    def list(self, clients: Clients, subscription: str) -> Iterator[Consumer]:
        for resource in clients.arm().list_by_subscription(
            subscription, self.resource_type, self.api_version
        ):
            consumer = self.to_consumer(clients, resource)
            if consumer is not None:
                yield consumer

    def read(self, clients: Clients, resource_id: ResourceId) -> Consumer | None:
        resource = clients.arm().get(str(resource_id), self.api_version)
        return None if resource is None else self.to_consumer(clients, resource)

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        raise NotImplementedError

    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        """One PATCH of the kind's minimal body; the poller ends at once for a synchronous PATCH
        and otherwise after ARM polling and a GET of the resource."""
        body = self.write_body(consumer, to_key)
        shown = clients.arm().begin_patch(str(consumer.resource_id), self.api_version, body).result()
        return self.to_consumer(clients, shown) if shown else None


def user_assigned(resource: Mapping[str, Any]) -> set[str]:
    """The user-assigned identity resource ids a resource holds, lower case."""
    identity = resource.get("identity") or {}
    return {i.lower() for i in (identity.get("userAssignedIdentities") or {})}


def has_system_identity(resource: Mapping[str, Any]) -> bool:
    identity_type = str((resource.get("identity") or {}).get("type") or "")
    return "systemassigned" in identity_type.replace(" ", "").lower()


def identity_facts(resource: Mapping[str, Any], chosen: str | None) -> tuple[str, bool]:
    """(the identity the resource uses for its key, whether the resource holds it): a named
    user-assigned identity, or else the system-assigned one."""
    if chosen:
        return chosen, chosen.lower() in user_assigned(resource)
    return "SystemAssigned", has_system_identity(resource)


def accepts_key_types(service: str, accepted: Mapping[str, tuple[int, ...]]) -> Any:
    """A plan check: `blocked: key-type-unsupported` when the desired version is a key type or RSA
    size the service refuses (`accepted`: key type -> RSA sizes in bits)."""

    def key_type_accepted(consumer: Consumer, ctx: PolicyContext) -> Decision | None:

        desired = ctx.state.desired
        if desired is None or desired.key_type is None:
            return None
        sizes = accepted.get(desired.key_type)
        if sizes is not None and (desired.key_size is None or desired.key_size in sizes):
            return None
        wanted = "; ".join(f"{kty} {'/'.join(map(str, bits))}" for kty, bits in accepted.items())
        size = f" {desired.key_size}" if desired.key_size else ""
        return Decision(
            BLOCKED,
            "key-type-unsupported",
            f"{service} accepts {wanted} keys; version {desired.version} is {desired.key_type}{size}",
        )

    return key_type_accepted
