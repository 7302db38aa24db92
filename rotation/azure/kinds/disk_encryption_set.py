"""Disk Encryption Sets: the key managed disks, snapshots and images are encrypted with.

The set names its key in `properties.activeKey.keyUrl` (always versioned) and, for a vault key,
the vault in `activeKey.sourceVault.id` (not used for a Managed HSM key). With
`rotationToLatestKeyVersionEnabled: true` Azure moves the set to a new version within about an
hour. The update is a long-running PATCH of `activeKey`; the disks follow the set by themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rotation.azure.kinds import Consumer
from rotation.azure.kinds.generic import ArmTargetKind, accepts_key_types, has_system_identity, user_assigned
from rotation.model.decisions import Check
from rotation.model.ids import DISK_ENCRYPTION_SET, InvalidId, KeyRef, parse_key_id, parse_resource_id

if TYPE_CHECKING:
    from rotation.azure.clients import Clients

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


def to_consumer(encryption_set: dict[str, Any]) -> Consumer | None:
    properties = encryption_set.get("properties") or {}
    active = properties.get("activeKey") or {}
    if not active.get("keyUrl"):
        return None
    try:
        key = parse_key_id(active["keyUrl"])
        resource_id = parse_resource_id(encryption_set.get("id", ""), (DISK_ENCRYPTION_SET,))
    except InvalidId:
        return None
    identity_type = str((encryption_set.get("identity") or {}).get("type") or "None")
    # The set reaches the key with its system-assigned identity, or else its one user-assigned one.
    assigned = has_system_identity(encryption_set) or bool(user_assigned(encryption_set))
    auto = bool(properties.get("rotationToLatestKeyVersionEnabled"))
    return Consumer(
        kind=KIND,
        resource_id=resource_id,
        key=key,
        location=encryption_set.get("location", ""),
        tags=dict(encryption_set.get("tags") or {}),
        identity=identity_type,
        identity_assigned=assigned,
        provisioning_state=properties.get("provisioningState"),
        follows_new_versions=auto or key.version is None,
        extra={"sourceVault": (active.get("sourceVault") or {}).get("id")},
    )


def write_body(consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
    active: dict[str, Any] = {"keyUrl": to_key.id}
    if consumer.extra.get("sourceVault") and not to_key.in_managed_hsm:
        active["sourceVault"] = {"id": consumer.extra["sourceVault"]}
    return {"properties": {"activeKey": active}}


class DiskEncryptionSets(ArmTargetKind):
    kind = KIND
    remediation = REMEDIATION
    resource_type = DISK_ENCRYPTION_SET
    api_version = API_VERSION
    plan_checks: tuple[Check, ...] = (accepts_key_types("Managed disks", ACCEPTED_KEYS),)

    def to_consumer(self, clients: Clients, resource: dict[str, Any]) -> Consumer | None:
        return to_consumer(resource)

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        return write_body(consumer, to_key)
