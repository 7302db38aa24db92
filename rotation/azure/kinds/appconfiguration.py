"""App Configuration stores (Microsoft.AppConfiguration/configurationStores, api-version
2024-06-01) encrypted with a customer-managed key in
`properties.encryption.keyVaultProperties.{keyIdentifier, identityClientId}`.

`identityClientId` is the client id of one of the store's user-assigned identities; absent or
null, the store reaches the key with its system-assigned identity. A client id no assigned
identity has is `identity-not-assigned`.

A versioned key id is moved by a PATCH of `keyVaultProperties` (long-running: the spec's PATCH
answers 200, or 201 with the store `Updating`), naming the same `identityClientId`; the poller's
final GET is the read-back. A versionless key id is `auto-rotating`. What the docs say
(learn.microsoft.com/azure/azure-app-configuration/concept-customer-managed-keys): "the
unwrapped encryption key is cached within App Configuration for one hour. Every hour, App
Configuration refreshes the unwrapped version", and "To mitigate the possibility of the
underlying managed key expiring, you can omit the key version when you configure managed-key
encryption and set up key auto-rotation in key vault". The store needs "An RSA or RSA-HSM key
[...] not expired, [...] enabled, and [...] both wrap and unwrap capabilities"; the docs name no
sizes, so the sizes Key Vault creates (2048, 3072, 4096) are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.model.consumer import Consumer
from rotation.model.decisions import Check
from rotation.model.ids import InvalidId, KeyRef, parse_key_id

API_VERSION = "2024-06-01"
KIND = "appconfiguration"
RESOURCE_TYPE = "Microsoft.AppConfiguration/configurationStores"
ACCEPTED_KEYS = {"RSA": (2048, 3072, 4096), "RSA-HSM": (2048, 3072, 4096)}
# Error code (lower case) -> what a person should do; "" matches any 400 from the service.
REMEDIATION = {
    "": "The App Configuration store could not use the key: check that the identity named by "
    "identityClientId (or its system-assigned identity) has 'Key Vault Crypto Service Encryption User' on "
    "the key (or get, wrapKey, unwrapKey) and that the vault has soft delete and purge protection; see "
    "https://learn.microsoft.com/azure/azure-app-configuration/concept-customer-managed-keys.",
}


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def identity_by_client_id(store: Mapping[str, Any], client_id: str | None) -> tuple[str, bool]:
    """(who, assigned): the user-assigned identity whose client id the store names, else the
    system-assigned one when none is named."""
    if not client_id:
        return a.identity_fact(store, None)
    users = _dict(_dict(store.get("identity")).get("userAssignedIdentities"))
    for resource_id, facts in users.items():
        if str(_dict(facts).get("clientId") or "").lower() == client_id.lower():
            return str(resource_id), True
    return client_id, False


def to_consumer(store: Mapping[str, Any]) -> Consumer | None:
    encryption = _dict(a.properties(store).get("encryption"))
    vault_properties = _dict(encryption.get("keyVaultProperties"))
    resource_id = a.resource_id_of(store, RESOURCE_TYPE)
    if resource_id is None or not vault_properties.get("keyIdentifier"):
        return None
    try:
        key = parse_key_id(str(vault_properties["keyIdentifier"]))
    except InvalidId:
        return None
    client_id = str(vault_properties.get("identityClientId") or "") or None
    identity = identity_by_client_id(store, client_id)
    extra = {"identityClientId": client_id}
    return a.consumer(KIND, resource_id, store, key, identity, follows=key.version is None, extra=extra)


class ConfigurationStores(a.ArmTargetKind):
    kind = KIND
    resource_type = RESOURCE_TYPE
    arm_actions = (  # the PATCH is long-running
        "Microsoft.AppConfiguration/configurationStores/read",
        "Microsoft.AppConfiguration/configurationStores/write",
        "Microsoft.AppConfiguration/locations/operationsStatus/read",
    )
    api_version = API_VERSION
    remediation = REMEDIATION
    plan_checks: tuple[Check, ...] = (a.accepts_key_types("App Configuration", ACCEPTED_KEYS),)

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        return a.one(to_consumer(resource))

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        keys = {"keyIdentifier": to_key.id, "identityClientId": consumer.extra.get("identityClientId")}
        return {"properties": {"encryption": {"keyVaultProperties": keys}}}
