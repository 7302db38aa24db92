"""Storage accounts encrypted with a customer-managed key.

The account names its key in `properties.encryption.keyvaultproperties` (`keyvaulturi`,
`keyname`, `keyversion`; Storage spells them in lower case) with `keySource: Microsoft.Keyvault`,
and the identity it uses in `encryption.identity.userAssignedIdentity` (empty: the system-assigned
identity). An empty `keyversion` means Storage follows new versions itself (it checks daily).
The update is a synchronous PATCH of the encryption block only, with the identity unchanged
(Storage refuses a change of identity and key in one operation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.azure.kinds.protocol import KEY_PARTS
from rotation.model.consumer import Consumer
from rotation.model.decisions import Check
from rotation.model.ids import STORAGE_ACCOUNT, InvalidId, KeyRef, key_from_parts

API_VERSION = "2024-01-01"
# Azure Storage accepts RSA and RSA-HSM keys of 2048, 3072 and 4096 bits (customer-managed keys docs).
ACCEPTED_KEYS = {"RSA": (2048, 3072, 4096), "RSA-HSM": (2048, 3072, 4096)}
KIND = "storage"
# Error code (lower case) -> what a person should do; "" matches any 400 from the service.
REMEDIATION = {
    "": "The storage account could not use the key: check that the identity in encryption.identity (or its "
    "system-assigned identity) has 'Key Vault Crypto Service Encryption User' on the key and that the vault has "
    "soft delete and purge protection; see https://learn.microsoft.com/azure/storage/common/customer-managed-keys-overview.",
}


def to_consumer(account: Mapping[str, Any]) -> Consumer | None:
    encryption = a.properties(account).get("encryption") or {}
    vault = encryption.get("keyvaultproperties") or {}
    resource_id = a.resource_id_of(account, STORAGE_ACCOUNT)
    if str(encryption.get("keySource", "")).lower() != "microsoft.keyvault" or not vault.get("keyname"):
        return None
    try:
        key = key_from_parts(vault.get("keyvaulturi", ""), vault["keyname"], vault.get("keyversion") or None)
    except InvalidId:
        return None
    if resource_id is None:
        return None
    identity = a.identity_fact(account, (encryption.get("identity") or {}).get("userAssignedIdentity"))
    extra = {"encryptionIdentity": dict(encryption.get("identity") or {})}
    # An empty keyversion: Storage moves to the newest version itself (daily).
    return a.consumer(KIND, resource_id, account, key, identity, follows=key.version is None, extra=extra)


def write_body(consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
    encryption: dict[str, Any] = {
        "keySource": "Microsoft.Keyvault",
        "keyvaultproperties": {
            "keyvaulturi": to_key.vault_url,
            "keyname": to_key.name,
            "keyversion": to_key.version,
        },
    }
    if consumer.extra.get("encryptionIdentity"):
        encryption["identity"] = dict(consumer.extra["encryptionIdentity"])  # unchanged
    return {"properties": {"encryption": encryption}}


class StorageAccounts(a.ArmTargetKind):
    kind = KIND
    key_naming = KEY_PARTS  # keyvaulturi, keyname, keyversion
    remediation = REMEDIATION
    resource_type = STORAGE_ACCOUNT
    arm_actions = (  # the PATCH is synchronous
        "Microsoft.Storage/storageAccounts/read",
        "Microsoft.Storage/storageAccounts/write",
    )
    api_version = API_VERSION
    plan_checks: tuple[Check, ...] = (a.accepts_key_types("Azure Storage", ACCEPTED_KEYS),)

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        return a.one(to_consumer(resource))

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        return write_body(consumer, to_key)
