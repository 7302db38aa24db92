"""Microsoft.Storage/storageAccounts (api-version 2024-01-01 shapes), the encryption parts.

PATCH is synchronous (200 with the account). A key named without `keyversion` follows the
key's newest version (Storage checks daily; here, at once). Storage refuses a change of
`encryption.identity` and `encryption.keyvaultproperties` in one request.
"""

from __future__ import annotations

from typing import Any

from .arm import arm_error, iso, latest_version_url
from .cmk import ArmResourceRoutes, Refusals, id_part, identity_names, key_parts, key_url, refusal
from .http import Request, Response
from .state import StorageAccount, now

TYPE = "Microsoft.Storage/storageAccounts"
REFUSALS = Refusals("KeyVaultKeyNotSupported", "KeyVaultAuthenticationFailure", (2048, 3072, 4096))


class StorageAccounts(ArmResourceRoutes[StorageAccount]):
    TYPE = TYPE
    WRITABLE = True  # a synchronous PATCH of the encryption block

    def resources(self) -> dict[str, StorageAccount]:
        return self.world.storage_accounts

    def _encryption(self, account: StorageAccount) -> dict[str, Any]:
        services = {
            "blob": {"enabled": True, "keyType": "Account"},
            "file": {"enabled": True, "keyType": "Account"},
        }
        if not account.key_id:
            return {"keySource": "Microsoft.Storage", "services": services}
        named = key_parts(account.key_id)  # Storage spells the parts in lower case
        vault: dict[str, Any] = {
            "keyvaulturi": named["keyVaultUri"] + "/",
            "keyname": named["keyName"],
            "keyversion": named["keyVersion"],
        }
        current = latest_version_url(self.world, account.key_id)
        if current:
            vault["currentVersionedKeyIdentifier"] = current
        if account.last_key_rotation:
            vault["lastKeyRotationTimestamp"] = iso(account.last_key_rotation)
        encryption: dict[str, Any] = {
            "keySource": "Microsoft.Keyvault",
            "keyvaultproperties": vault,
            "services": services,
            "requireInfrastructureEncryption": False,
        }
        if account.encryption_identity:
            encryption["identity"] = {"userAssignedIdentity": account.encryption_identity}
        return encryption

    def render(self, account: StorageAccount) -> dict[str, Any]:
        name = id_part(account.id, "name")
        properties = {
            "provisioningState": account.provisioning_state,
            "primaryEndpoints": {"blob": f"https://{name}.blob.core.windows.net/"},
            "minimumTlsVersion": "TLS1_2",
            "allowBlobPublicAccess": False,
            "encryption": self._encryption(account),
        }
        return self.envelope(
            account, properties, kind="StorageV2", sku={"name": "Standard_LRS", "tier": "Standard"}
        )

    def write(self, request: Request, account: StorageAccount, body: dict[str, Any], name: str) -> Response:
        encryption = (body.get("properties") or {}).get("encryption")
        if encryption is not None:
            refused = self._check_encryption(account, name, encryption)
            if refused is not None:
                return refused
            new_key = self._key_of(encryption)
            if new_key != account.key_id:
                account.last_key_rotation = now()
            account.key_id = new_key
            named = (encryption.get("identity") or {}).get("userAssignedIdentity")
            if named is not None:
                account.encryption_identity = named or None
        if body.get("tags") is not None:
            account.tags = dict(body["tags"])
        return Response.json(200, self.render(account))

    @staticmethod
    def _key_of(encryption: dict[str, Any]) -> str | None:
        if str(encryption.get("keySource", "")).lower() != "microsoft.keyvault":
            return None
        vault = encryption.get("keyvaultproperties") or {}
        return key_url(vault.get("keyvaulturi"), vault.get("keyname"), vault.get("keyversion"))

    def _check_encryption(
        self, account: StorageAccount, name: str, encryption: dict[str, Any]
    ) -> Response | None:
        source = str(encryption.get("keySource", "")).lower()
        if source not in ("microsoft.keyvault", "microsoft.storage"):
            return arm_error(
                400,
                "InvalidValuesForRequestParameters",
                "keySource must be Microsoft.Storage or Microsoft.Keyvault.",
            )
        # a new identity and a key may come in one request (the spec's example
        # StorageAccountUpdateUserAssignedEncryptionIdentityWithCMK sends both)
        chosen = (encryption.get("identity") or {}).get("userAssignedIdentity", account.encryption_identity)
        if source == "microsoft.storage":
            return None
        key_url = self._key_of(encryption) or ""
        if chosen and chosen.lower() not in {i.lower() for i in account.identities}:
            return arm_error(
                400,
                "InvalidEncryptionIdentity",
                f"The user assigned identity '{chosen}' is not associated with storage account '{name}'.",
            )
        if not chosen and not account.system_principal:
            return arm_error(
                400,
                "MissingIdentity",
                f"Storage account '{name}' has no identity to use a customer-managed key with.",
            )
        users = [chosen] if chosen else []
        return refusal(
            self.world,
            key_url,
            identity_names(self.world, users, None if chosen else account.system_principal),
            REFUSALS,
            f"Storage account '{name}'",
        )
