"""Event Hubs and Service Bus namespaces (Microsoft.EventHub/namespaces,
Microsoft.ServiceBus/namespaces): the same encryption shape, so one module and two kinds.

`properties.encryption.keyVaultProperties[]` is a list; each entry is one key
({keyName, keyVaultUri, keyVersion, identity.userAssignedIdentity}). A namespace is one Consumer
per key it holds, carrying the whole list in `extra["entries"]`, so a plan for a key shows the
namespace once and the write changes only that key's entries: the PATCH replaces the list, so
it sends every entry, the others exactly as they were read. An entry without a keyVersion is
followed by the service (auto-rotation). Per the REST specs the namespace PATCH is not a
long-running operation (200, or 201/202 while the namespace updates); it goes through the ARM
poller all the same, so a 202 is followed to its end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.azure.kinds.protocol import KEY_PARTS
from rotation.model.consumer import Consumer
from rotation.model.ids import EVENTHUB_NAMESPACE, SERVICEBUS_NAMESPACE, KeyRef

API_VERSION = "2024-01-01"
_ENTRY_FIELDS = ("keyName", "keyVaultUri", "keyVersion")
REMEDIATION = {
    "badrequest": "The namespace could not use the key version: check the identity named in its "
    "keyVaultProperties entry is assigned to the namespace and has get, wrapKey and unwrapKey on the key, "
    "and that the vault has soft-delete and purge protection on.",
}


def entries_of(resource: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    encryption = a.properties(resource).get("encryption")
    if not isinstance(encryption, dict) or encryption.get("keySource") != "Microsoft.KeyVault":
        return ()
    raw = encryption.get("keyVaultProperties")
    return tuple(_entry(e) for e in raw if isinstance(e, dict)) if isinstance(raw, list) else ()


def _entry(raw: dict[str, Any]) -> dict[str, Any]:
    """One entry, values only, in the wire shape."""
    entry: dict[str, Any] = {f: str(raw[f]) for f in _ENTRY_FIELDS if raw.get(f) is not None}
    identity = raw.get("identity")
    if isinstance(identity, dict) and identity.get("userAssignedIdentity"):
        entry["identity"] = {"userAssignedIdentity": str(identity["userAssignedIdentity"])}
    return entry


def moved(entries: tuple[dict[str, Any], ...], to_key: KeyRef) -> list[dict[str, Any]]:
    """The list with `to_key`'s entries moved to its version (their name and vault as the entry
    spells them), every other entry as it was."""
    out = []
    for entry in entries:
        key = a.vault_key(entry)
        if key is not None and key.same_key(to_key):
            entry = {**entry, "keyVersion": to_key.version or ""}
        out.append(entry)
    return out


class Namespaces(a.ArmTargetKind):
    key_naming = KEY_PARTS  # each keyVaultProperties[] entry: keyVaultUri, keyName, keyVersion
    api_version = API_VERSION
    remediation = REMEDIATION

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        resource_id = a.resource_id_of(resource, self.resource_type)
        entries = entries_of(resource)
        if resource_id is None or not entries:
            return []
        encryption = a.properties(resource)["encryption"]
        extra = {
            "entries": entries,
            "requireInfrastructureEncryption": bool(encryption.get("requireInfrastructureEncryption")),
        }
        found: dict[tuple[str, str], Consumer] = {}
        for entry in entries:
            key = a.vault_key(entry)
            if key is None or key.identity in found:
                continue
            named = (entry.get("identity") or {}).get("userAssignedIdentity")
            identity = a.identity_fact(resource, named)
            found[key.identity] = a.consumer(
                self.kind, resource_id, resource, key, identity, follows=key.version is None, extra=extra
            )
        return list(found.values())

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        encryption = {
            "keySource": "Microsoft.KeyVault",
            "keyVaultProperties": moved(tuple(consumer.extra["entries"]), to_key),
            "requireInfrastructureEncryption": consumer.extra["requireInfrastructureEncryption"],
        }
        return {"properties": {"encryption": encryption}}


class EventHubNamespaces(Namespaces):
    kind = "eventhub"
    resource_type = EVENTHUB_NAMESPACE
    arm_actions = (  # a synchronous PATCH, or a PUT whose status is read at operationresults
        "Microsoft.EventHub/namespaces/read",
        "Microsoft.EventHub/namespaces/write",
        "Microsoft.EventHub/namespaces/operationresults/read",
    )


class ServiceBusNamespaces(Namespaces):
    kind = "servicebus"
    resource_type = SERVICEBUS_NAMESPACE
    arm_actions = (  # a synchronous PATCH, or a PUT whose status is read at operationresults
        "Microsoft.ServiceBus/namespaces/read",
        "Microsoft.ServiceBus/namespaces/write",
        "Microsoft.ServiceBus/namespaces/operationresults/read",
    )
