"""Disk Encryption Sets: the key managed disks, snapshots and images are encrypted with.

The set names its key in `properties.activeKey.keyUrl` (always versioned) and, for a vault key,
the vault in `activeKey.sourceVault.id` (not used for a Managed HSM key). With
`rotationToLatestKeyVersionEnabled: true` Azure moves the set to a new version within about an
hour. The update is a long-running PATCH of `activeKey`; the disks follow the set by themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.model.consumer import Consumer
from rotation.model.decisions import Check
from rotation.model.ids import DISK_ENCRYPTION_SET, InvalidId, KeyRef, parse_key_id

API_VERSION = "2024-03-02"
KIND = "diskencryptionset"
# Managed disks accept software and HSM RSA keys of 2048, 3072 and 4096 bits, no other types or sizes.
ACCEPTED_KEYS = {"RSA": (2048, 3072, 4096), "RSA-HSM": (2048, 3072, 4096)}
# Error code (lower case) -> what a person should do; "" matches any 400 from the service.
REMEDIATION = {
    "": "The Disk Encryption Set could not use the key: check that its managed identity has 'Key Vault Crypto "
    "Service Encryption User' on the key (Managed HSM: the local RBAC role of the same name) and that the vault "
    "has purge protection; see https://learn.microsoft.com/azure/virtual-machines/disk-encryption.",
}


def to_consumer(encryption_set: Mapping[str, Any]) -> Consumer | None:
    properties = a.properties(encryption_set)
    active = properties.get("activeKey") or {}
    resource_id = a.resource_id_of(encryption_set, DISK_ENCRYPTION_SET)
    if not active.get("keyUrl") or resource_id is None:
        return None
    try:
        key = parse_key_id(active["keyUrl"])
    except InvalidId:
        return None
    identity_type = str((encryption_set.get("identity") or {}).get("type") or "None")
    # The set reaches the key with its system-assigned identity, or else its one user-assigned one.
    assigned = a.system_assigned(encryption_set) or bool(a.user_assigned(encryption_set))
    follows = bool(properties.get("rotationToLatestKeyVersionEnabled")) or key.version is None
    extra = {"sourceVault": (active.get("sourceVault") or {}).get("id")}
    return a.consumer(
        KIND, resource_id, encryption_set, key, (identity_type, assigned), follows=follows, extra=extra
    )


def write_body(consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
    active: dict[str, Any] = {"keyUrl": to_key.id}
    if consumer.extra.get("sourceVault") and not to_key.in_managed_hsm:
        active["sourceVault"] = {"id": consumer.extra["sourceVault"]}
    return {"properties": {"activeKey": active}}


class DiskEncryptionSets(a.ArmTargetKind):
    kind = KIND
    remediation = REMEDIATION
    resource_type = DISK_ENCRYPTION_SET
    arm_actions = (  # the PATCH is long-running (Compute operations)
        "Microsoft.Compute/diskEncryptionSets/read",
        "Microsoft.Compute/diskEncryptionSets/write",
        "Microsoft.Compute/locations/operations/read",
    )
    api_version = API_VERSION
    polls_resource = True  # EncryptionSetProperties.provisioningState: Updating until the PATCH ends
    plan_checks: tuple[Check, ...] = (a.accepts_key_types("Managed disks", ACCEPTED_KEYS),)

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        return a.one(to_consumer(resource))

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        return write_body(consumer, to_key)
