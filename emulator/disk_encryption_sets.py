"""Microsoft.Compute/diskEncryptionSets (api-version 2024-03-02 shapes).

PATCH is a long-running operation (202 with the set, Azure-AsyncOperation and Location; the change lands
when the operation succeeds). `activeKey.sourceVault.id` must name the key's vault for a Key
Vault key and is absent for a Managed HSM key. With `rotationToLatestKeyVersionEnabled` the set
shows the key's newest version (Azure moves it within about an hour; here, at once).
"""

from __future__ import annotations

from typing import Any

from .arm import arm_error, iso, latest_version_url
from .cmk import ArmResourceRoutes, Refusals, id_part, identity_names, refusal
from .http import Request, Response
from .state import DiskEncryptionSet, World, now

NAMESPACE = "Microsoft.Compute"
TYPE = "Microsoft.Compute/diskEncryptionSets"
REFUSALS = Refusals("InvalidParameter", "KeyVaultAccessForbidden", (2048, 3072, 4096))


def versionless(key_url: str) -> str:
    base, _, rest = key_url.partition("/keys/")
    return f"{base}/keys/{rest.split('/', 1)[0]}"


def active_key_url(world: World, des: DiskEncryptionSet) -> str:
    """The version the set uses now: with rotationToLatestKeyVersionEnabled, the key's newest.
    ARM's answers and GET /state both show this one, so no reader sees an older version."""
    if des.rotation_to_latest:
        return latest_version_url(world, versionless(des.key_id)) or des.key_id
    return des.key_id


class DiskEncryptionSets(ArmResourceRoutes[DiskEncryptionSet]):
    TYPE = TYPE
    WRITABLE = True  # a long-running PATCH of activeKey
    BUSY_CODE = "OperationNotAllowed"

    def resources(self) -> dict[str, DiskEncryptionSet]:
        return self.world.disk_encryption_sets

    def render(self, des: DiskEncryptionSet) -> dict[str, Any]:
        active: dict[str, Any] = {"keyUrl": active_key_url(self.world, des)}
        if des.source_vault:
            active["sourceVault"] = {"id": des.source_vault}
        properties: dict[str, Any] = {
            "activeKey": active,
            "encryptionType": "EncryptionAtRestWithCustomerKey",
            "rotationToLatestKeyVersionEnabled": des.rotation_to_latest,
            "previousKeys": [],
            "provisioningState": des.provisioning_state,
        }
        if des.last_key_rotation:
            properties["lastKeyRotationTimestamp"] = iso(des.last_key_rotation)
        body = self.envelope(des, properties)
        body.setdefault("identity", {"type": "None"})  # a set without one says so
        return body

    def write(self, request: Request, des: DiskEncryptionSet, body: dict[str, Any], name: str) -> Response:
        properties = body.get("properties") or {}
        active = properties.get("activeKey")
        key_url, source_vault = des.key_id, des.source_vault
        if active is not None:
            key_url = active.get("keyUrl") or ""
            source_vault = (active.get("sourceVault") or {}).get("id")
            refused = self._check_key(des, name, key_url, source_vault)
            if refused is not None:
                return refused
        rotate = properties.get("rotationToLatestKeyVersionEnabled", des.rotation_to_latest)
        previous_state = des.provisioning_state
        des.provisioning_state = "Updating"

        def apply() -> None:
            if key_url != des.key_id:
                des.last_key_rotation = now()
            des.key_id, des.source_vault, des.rotation_to_latest = key_url, source_vault, bool(rotate)
            if body.get("tags") is not None:
                des.tags = dict(body["tags"])
            des.provisioning_state = "Succeeded"

        def revert() -> None:
            des.provisioning_state = previous_state

        # Compute's spec: 202 with Location only
        return self.arm.answer_write(
            request,
            des.id,
            NAMESPACE,
            des.location,
            apply,
            revert,
            shape="location202",
            body=lambda: self.render(des),
        )

    def _check_key(
        self, des: DiskEncryptionSet, name: str, key_url: str, source_vault: str | None
    ) -> Response | None:
        # sourceVault is optional (Compute 2024-03-02); when given it must be the key's vault, in
        # the set's own subscription (the spec: not usable across subscriptions)
        in_hsm = ".managedhsm." in key_url.lower()
        vault_name = key_url.split("//", 1)[-1].split(".", 1)[0].lower()
        if source_vault and not in_hsm and id_part(source_vault, "name").lower() != vault_name:
            return arm_error(
                400,
                "InvalidParameter",
                f"activeKey.sourceVault.id must be the Key Vault that holds '{key_url}'.",
            )
        if source_vault and id_part(source_vault, "sub").lower() != id_part(des.id, "sub").lower():
            return arm_error(
                400,
                "InvalidParameter",
                "activeKey.sourceVault cannot name a Key Vault in another subscription; leave it out.",
            )
        if not (des.identities or des.system_principal):
            return arm_error(
                400, "InvalidParameter", f"Disk Encryption Set '{name}' has no managed identity."
            )
        who = f"Disk Encryption Set '{name}'"
        return refusal(
            self.world,
            key_url,
            identity_names(self.world, des.identities, des.system_principal),
            REFUSALS,
            who,
        )
