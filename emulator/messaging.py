"""Microsoft.EventHub/namespaces and Microsoft.ServiceBus/namespaces (api-version 2024-01-01
shapes): `properties.encryption.keyVaultProperties[]`, one entry per key, each naming the
user-assigned identity it is reached with. PATCH answers 200 with the namespace `Updating` (the
REST specs do not mark it long-running, yet the service settles later) and replaces the whole list."""

from __future__ import annotations

from typing import Any

from .arm import arm_error
from .cmk import KeyedProvider, Refused, key_parts, key_url
from .state import KeyedResource


class Namespaces(KeyedProvider):
    WRITE_SHAPE = "body200"
    ERROR_CODE = "BadRequest"
    HOST_SUFFIX: str

    def properties(self, resource: KeyedResource, name: str) -> dict[str, Any]:
        identity = {"userAssignedIdentity": resource.key_identity} if resource.key_identity else None
        entries = [
            {**key_parts(url), **({"identity": identity} if identity else {})} for url in resource.key_ids
        ]
        return {
            "provisioningState": resource.provisioning_state,
            "status": "Active",
            "serviceBusEndpoint": f"https://{name.lower()}.{self.HOST_SUFFIX}:443/",
            "metricId": f"{resource.id.split('/')[2]}:{name.lower()}",
            "disableLocalAuth": False,
            "encryption": {
                "keySource": "Microsoft.KeyVault",
                "keyVaultProperties": entries,
                "requireInfrastructureEncryption": bool(
                    resource.options.get("requireInfrastructureEncryption")
                ),
            },
        }

    def decorate(self, body: dict[str, Any], resource: KeyedResource) -> None:
        body["sku"] = {"name": "Premium", "tier": "Premium", "capacity": 1}

    def requested(self, body: dict[str, Any], resource: KeyedResource) -> tuple[list[str], str | None]:
        encryption = (body.get("properties") or {}).get("encryption")
        if encryption is None:
            return list(resource.key_ids), resource.key_identity
        entries = encryption.get("keyVaultProperties") if isinstance(encryption, dict) else None
        if (
            encryption.get("keySource") != "Microsoft.KeyVault"
            or not isinstance(entries, list)
            or not entries
        ):
            raise Refused(
                arm_error(
                    400, "BadRequest", "encryption needs keySource Microsoft.KeyVault and keyVaultProperties."
                )
            )
        identities = {(e.get("identity") or {}).get("userAssignedIdentity") for e in entries}
        if len(identities) != 1:
            raise Refused(
                arm_error(400, "BadRequest", "Every keyVaultProperties entry must name the same identity.")
            )
        urls = [key_url(e.get("keyVaultUri"), e.get("keyName"), e.get("keyVersion")) for e in entries]
        return urls, identities.pop() or None


class EventHubNamespaces(Namespaces):
    TYPE = "Microsoft.EventHub/namespaces"
    NAMESPACE = "Microsoft.EventHub"
    HOST_SUFFIX = "servicebus.windows.net"


class ServiceBusNamespaces(Namespaces):
    TYPE = "Microsoft.ServiceBus/namespaces"
    NAMESPACE = "Microsoft.ServiceBus"
    HOST_SUFFIX = "servicebus.windows.net"
