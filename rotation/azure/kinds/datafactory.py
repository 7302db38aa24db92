"""Data Factory factories (Microsoft.DataFactory/factories, api-version 2018-06-01) encrypted
with a customer-managed key in `properties.encryption.{vaultBaseUrl, keyName, keyVersion,
identity.userAssignedIdentity}`.

Per the REST spec, an encryption without `keyVersion` uses the key's latest version (the service
follows it: `auto-rotating`), and the identity is the user-assigned one named there or, without
one, the factory's system-assigned identity. The factory PATCH (FactoryUpdateParameters) takes no
`encryption`, so the write is a PUT of the factory as read (putkind.py) with `If-Match` on its
`eTag`, leaving out what the service sets (provisioningState, createTime, version, eTag); the
spec's PUT answers 200 with the factory (not long-running), which is read back and verified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.azure.kinds.protocol import KEY_PARTS
from rotation.azure.kinds.putkind import PutAsReadKind
from rotation.model.consumer import Consumer
from rotation.model.decisions import Check
from rotation.model.ids import DATA_FACTORY, InvalidId, KeyRef, key_from_parts

API_VERSION = "2018-06-01"
# Data Factory wraps its factory key with RSA keys of 2048, 3072 or 4096 bits (vault or HSM-backed).
ACCEPTED_KEYS = {"RSA": (2048, 3072, 4096), "RSA-HSM": (2048, 3072, 4096)}
REMEDIATION = {
    # ARM checks the caller may assign each user-assigned identity a PUT names, even unchanged.
    "linkedauthorizationfailed": "ARM refused the factory PUT because it repeats the factory's user-assigned "
    "identity: name that identity in the infra's dataFactoryIdentityScopes (the identity-assigner custom role "
    "on it), deploy, then run the rotation again.",
    "": "The factory could not use the key version: check that the identity in properties.encryption.identity "
    "(or the factory's system-assigned identity) is assigned to the factory and has get, wrapKey and unwrapKey "
    "on the key, and that the vault has soft delete and purge protection; see "
    "https://learn.microsoft.com/azure/data-factory/enable-customer-managed-key.",
}


def encryption_of(resource: Mapping[str, Any]) -> dict[str, Any]:
    value = a.properties(resource).get("encryption")
    return value if isinstance(value, dict) else {}


def key_of(encryption: Mapping[str, Any]) -> KeyRef | None:
    if not encryption.get("vaultBaseUrl") or not encryption.get("keyName"):
        return None
    try:
        return key_from_parts(
            str(encryption["vaultBaseUrl"]), str(encryption["keyName"]), encryption.get("keyVersion") or None
        )
    except InvalidId:
        return None


def to_consumer(resource: Mapping[str, Any]) -> Consumer | None:
    resource_id = a.resource_id_of(resource, DATA_FACTORY)
    encryption = encryption_of(resource)
    key = key_of(encryption)
    if resource_id is None or key is None:
        return None
    named = (encryption.get("identity") or {}).get("userAssignedIdentity")
    identity = a.identity_fact(resource, str(named) if named else None)
    return a.consumer("datafactory", resource_id, resource, key, identity, follows=key.version is None)


class DataFactories(PutAsReadKind):
    kind = "datafactory"
    key_naming = KEY_PARTS  # vaultBaseUrl, keyName, keyVersion
    resource_type = DATA_FACTORY
    arm_actions = (  # the PUT answers 200 (not long-running)
        "Microsoft.DataFactory/factories/read",
        "Microsoft.DataFactory/factories/write",
    )
    api_version = API_VERSION
    remediation = REMEDIATION
    plan_checks: tuple[Check, ...] = (a.accepts_key_types("Data Factory", ACCEPTED_KEYS),)
    read_only = (
        *PutAsReadKind.read_only,
        ("properties", "provisioningState"),
        ("properties", "createTime"),
        ("properties", "version"),
    )

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        return a.one(to_consumer(resource))

    def moved(self, document: dict[str, Any], to_key: KeyRef) -> bool:
        encryption = encryption_of(document)
        key = key_of(encryption)
        if key is None or not key.same_key(to_key) or key.version is None or key.version == to_key.version:
            return False
        encryption["keyVersion"] = to_key.version
        return True
