"""The shared half of the kinds read through the generic ARM client (rotation/azure/arm.py):
list by subscription and GET by id with the kind's api-version, ARM bodies (plain dicts in the
wire format) mapped to Consumers by the kind's `to_consumers`, one PATCH of the kind's minimal
`write_body`, the identity facts they share and the key types each service accepts.

A resource can hold more than one key (an Event Hubs namespace's `keyVaultProperties[]`), so a
kind maps one resource to a Consumer per key it uses; `read_key` picks the one for a key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rotation.azure.kinds.protocol import ApplyContext, KindDefaults
from rotation.model.consumer import Consumer, Unreadable
from rotation.model.decisions import BLOCKED, Check, Decision, PolicyContext
from rotation.model.errors import Hint, StillRunning
from rotation.model.ids import InvalidId, KeyRef, ResourceId, key_from_parts, parse_resource_id

if TYPE_CHECKING:
    from rotation.azure.clients import Clients


class NeverWritten(RuntimeError):
    """A kind this system reports but never writes was asked to write (a plan bug, not a fault)."""


class ArmTargetKind(KindDefaults):
    """A kind listed with `GET /subscriptions/{s}/providers/{type}` and read with a GET of its id."""

    kind: str
    resource_type: str
    arm_actions: tuple[str, ...]
    api_version: str
    # The service's permanent error codes (lower case) -> what a person should do about them;
    # "" is the sentence for any other 400 from the service.
    remediation: Mapping[str, str] = {}
    # Its consumers are read from the resource alone, so a Resource Graph row will do (discovery.py)
    from_rows = True
    # Its spec keeps `properties.provisioningState` on the resource through a long-running PUT or
    # PATCH: after the write's Retry-After the resource itself is polled (one read per write)
    # instead of the status link and then the resource (polling.ResourceFirstARMPolling).
    polls_resource = False

    @property
    def hints(self) -> tuple[Hint, ...]:  # type: ignore[override]  # derived from `remediation`
        return tuple(
            Hint(None, code, text) if code else Hint(400, None, text)
            for code, text in self.remediation.items()
        )

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        raise NotImplementedError

    def list(self, clients: Clients, subscription: str) -> Iterator[Consumer | Unreadable]:
        resources = clients.arm().list_by_subscription(subscription, self.resource_type, self.api_version)
        return each_read(self.kind, resources, self.to_consumers)

    def read(self, clients: Clients, resource_id: ResourceId) -> Consumer | None:
        consumers = self.read_all(clients, resource_id)
        return consumers[0] if consumers else None

    def read_key(self, clients: Clients, resource_id: ResourceId, key: KeyRef) -> Consumer | None:
        """The resource as a consumer of `key` (None when it does not use that key)."""
        return pick(self.read_all(clients, resource_id), key)

    def read_all(self, clients: Clients, resource_id: ResourceId) -> Sequence[Consumer]:
        """The resource as a consumer of each key it uses (none when it is gone)."""
        resource = clients.arm().get(str(resource_id), self.api_version)
        return self.to_consumers(resource) if resource is not None else []

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        """The minimal PATCH body that moves the resource to `to_key`."""
        raise NeverWritten(f"{consumer.target}: {self.kind} resources are never written by this system")

    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        """One PATCH of `write_body`; the poller ends at once for a synchronous PATCH and
        otherwise after ARM polling and a GET of the resource. Past the kind's `write_wait`
        the write is left running (None: the run reads the target again)."""
        body = self.write_body(consumer, to_key)
        try:
            written = clients.arm().write(
                "PATCH",
                consumer.target,
                self.api_version,
                body,
                shows_write=self.written_check(to_key),
                wait_at_most=self.write_wait(),
            )
        except StillRunning:
            return None
        return self.shown(written, to_key)

    def write_wait(self) -> float | None:
        """How long a long-running write is polled for before it is left running (None: to its
        end); the run's budget ends it sooner, as it ends every wait."""
        return None

    def written_check(self, to_key: KeyRef) -> Callable[[Any], bool] | None:
        """For `Arm.write`: how to tell, from the resource alone, that a long-running write of
        `to_key` has landed (None: the kind follows the status link, as its spec asks)."""
        if not self.polls_resource:
            return None

        def shows(resource: Any) -> bool:
            shown = self.shown(resource, to_key)
            return shown is not None and self.verified(shown, to_key)

        return shows

    def shown(self, result: object, to_key: KeyRef) -> Consumer | None:
        """The consumer of `to_key` in the resource a write answered with."""
        return pick(self.to_consumers(result), to_key) if isinstance(result, dict) else None


def each_read(
    kind: str, resources: Iterable[Any], read: Callable[[Any], Iterable[Consumer]]
) -> Iterator[Consumer | Unreadable]:
    """Each listed resource's consumers; one whose data trips `read` is reported as Unreadable
    and the list goes on (one resource owner's odd value must not hide the others)."""
    for resource in resources:
        try:
            found = list(read(resource))
        except Exception as exc:  # noqa: BLE001 - kept with the resource; the others are read
            named = resource.get("id") if isinstance(resource, Mapping) else None
            yield Unreadable(str(named or "?"), kind, f"{type(exc).__name__}: {exc}")
        else:
            yield from found


def pick(consumers: Sequence[Consumer], key: KeyRef) -> Consumer | None:
    return next((c for c in consumers if c.key.same_key(key)), None)


def one(consumer: Consumer | None) -> list[Consumer]:
    """`to_consumers` for a kind whose resources hold at most one key."""
    return [] if consumer is None else [consumer]


def resource_id_of(resource: Mapping[str, Any], resource_type: str) -> ResourceId | None:
    try:
        return parse_resource_id(str(resource.get("id") or ""), (resource_type,))
    except InvalidId:
        return None


def properties(resource: Mapping[str, Any]) -> dict[str, Any]:
    value = resource.get("properties")
    return value if isinstance(value, dict) else {}


def tags(resource: Mapping[str, Any]) -> dict[str, str]:
    value = resource.get("tags")
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def user_assigned(resource: Mapping[str, Any]) -> set[str]:
    """The user-assigned identities the resource holds, as lower-case resource ids."""
    identity = resource.get("identity") or {}
    assigned = identity.get("userAssignedIdentities") if isinstance(identity, dict) else None
    return {str(i).lower() for i in assigned} if isinstance(assigned, dict) else set()


def system_assigned(resource: Mapping[str, Any]) -> bool:
    identity = resource.get("identity") or {}
    kind = str(identity.get("type") or "") if isinstance(identity, dict) else ""
    return "systemassigned" in kind.replace(" ", "").lower()


def identity_fact(resource: Mapping[str, Any], named: str | None) -> tuple[str, bool]:
    """(who, assigned) for the identity a resource names for its key: a user-assigned identity's
    resource id, or None/"" for the system-assigned one."""
    if named:
        return named, named.lower() in user_assigned(resource)
    return "SystemAssigned", system_assigned(resource)


def own_identity(resource: Mapping[str, Any]) -> tuple[str, bool]:
    """For a resource that reaches its key with the one identity it has (a Log Analytics
    cluster; an AKS cluster's control plane): its user-assigned identity, else the system one."""
    users = sorted(user_assigned(resource))
    return (users[0], True) if users else identity_fact(resource, None)


def consumer(
    kind: str,
    resource_id: ResourceId,
    resource: Mapping[str, Any],
    key: KeyRef,
    identity: tuple[str, bool],
    *,
    follows: bool,
    extra: Mapping[str, Any] | None = None,
) -> Consumer:
    return Consumer(
        kind=kind,
        resource_id=resource_id,
        key=key,
        location=str(resource.get("location") or ""),
        tags=tags(resource),
        identity=identity[0],
        identity_assigned=identity[1],
        provisioning_state=str(properties(resource).get("provisioningState") or "") or None,
        follows_new_versions=follows,
        extra=dict(extra or {}),
    )


def vault_key(entry: Any) -> KeyRef | None:
    """A key named the way most services name it: {keyVaultUri, keyName, keyVersion} (an empty
    keyVersion means the service follows the key's newest version)."""
    if not isinstance(entry, dict) or not entry.get("keyVaultUri") or not entry.get("keyName"):
        return None
    try:
        return key_from_parts(
            str(entry["keyVaultUri"]), str(entry["keyName"]), entry.get("keyVersion") or None
        )
    except InvalidId:
        return None


def vault_entry(to_key: KeyRef) -> dict[str, str]:
    """{keyVaultUri, keyName, keyVersion} for a versioned key."""
    return {"keyVaultUri": to_key.vault_url, "keyName": to_key.name, "keyVersion": to_key.version or ""}


def accepts_key_types(service: str, accepted: Mapping[str, tuple[int, ...]]) -> Check:
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
