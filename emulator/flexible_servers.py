"""Microsoft.DBforPostgreSQL/flexibleServers (api-version 2025-08-01 shapes) and
Microsoft.DBforMySQL/flexibleServers (2024-12-30): `properties.dataEncryption.{type,
primaryKeyURI, primaryUserAssignedIdentityId, geoBackupKeyURI, geoBackupUserAssignedIdentityId}`,
PostgreSQL's read-only `primaryEncryptionKeyStatus` (Invalid while the key cannot be used), the
server's `state` (Updating during a write). A PATCH is long-running: 202 with
`Azure-AsyncOperation` (`locations/{l}/azureAsyncOperation/{id}`) and `Location`, as both specs'
examples answer. Only user-assigned identities reach the key; the geo-backup key is checked
with its own identity. The geo-backup key and identity live in the record's `options`
(`geoBackupKeyId`, `geoBackupIdentity`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .arm import arm_error, key_problem
from .cmk import KeyedProvider, Refused, key_parts
from .state import KeyedResource

GEO_KEY, GEO_IDENTITY = "geoBackupKeyId", "geoBackupIdentity"
SIZES = (2048, 3072, 4096)


def encryption_of(body: dict[str, Any]) -> dict[str, Any]:
    encryption = (body.get("properties") or {}).get("dataEncryption")
    if not isinstance(encryption, dict) or encryption.get("type") != "AzureKeyVault":
        raise Refused(arm_error(400, "InvalidParameter", "dataEncryption.type must be AzureKeyVault."))
    return encryption


class FlexibleServers(KeyedProvider):
    WRITE_SHAPE = "both202"
    ENGINE = ""
    VERSION = ""

    def properties(self, resource: KeyedResource, name: str) -> dict[str, Any]:
        encryption: dict[str, Any] = {
            "type": "AzureKeyVault",
            "primaryKeyURI": resource.key_ids[0],
            "primaryUserAssignedIdentityId": resource.key_identity,
        }
        geo = resource.options.get(GEO_KEY)
        if geo:
            encryption["geoBackupKeyURI"] = geo
            encryption["geoBackupUserAssignedIdentityId"] = resource.options.get(GEO_IDENTITY)
        self.status(encryption, resource)
        return {
            "administratorLogin": "cloudsa",
            "version": self.VERSION,
            "state": "Updating" if resource.provisioning_state == "Updating" else "Ready",
            "fullyQualifiedDomainName": f"{name.lower()}.{self.ENGINE}.database.azure.com",
            "storage": {"storageSizeGB": 128, "autoGrow": "Disabled"},
            "backup": {"backupRetentionDays": 7, "geoRedundantBackup": "Enabled" if geo else "Disabled"},
            "network": {"publicNetworkAccess": "Disabled"},
            "highAvailability": {"mode": "Disabled", "state": "NotEnabled"},
            "dataEncryption": encryption,
        }

    def status(self, encryption: dict[str, Any], resource: KeyedResource) -> None:
        """The read-only key status fields the service adds (PostgreSQL)."""

    def decorate(self, body: dict[str, Any], resource: KeyedResource) -> None:
        body["sku"] = {"name": "Standard_D2ds_v4", "tier": "GeneralPurpose"}

    def requested(self, body: dict[str, Any], resource: KeyedResource) -> tuple[list[str], str | None]:
        encryption = encryption_of(body)
        uri, identity = encryption.get("primaryKeyURI"), encryption.get("primaryUserAssignedIdentityId")
        if not uri or not identity:
            raise Refused(
                arm_error(
                    400,
                    "InvalidParameter",
                    "dataEncryption needs primaryKeyURI and primaryUserAssignedIdentityId (a user-assigned identity).",
                )
            )
        self.sized(str(uri))
        return [str(uri)], str(identity)

    def also_requested(
        self, body: dict[str, Any], resource: KeyedResource, name: str
    ) -> Callable[[], None] | None:
        encryption = encryption_of(body)
        uri, identity = encryption.get("geoBackupKeyURI"), encryption.get("geoBackupUserAssignedIdentityId")
        if not uri:
            return None
        if not identity:
            raise Refused(
                arm_error(400, "InvalidParameter", "geoBackupKeyURI needs geoBackupUserAssignedIdentityId.")
            )
        self.sized(str(uri))
        self._check(resource, name, [str(uri)], str(identity))

        def apply() -> None:
            resource.options[GEO_KEY], resource.options[GEO_IDENTITY] = str(uri), str(identity)

        return apply

    def sized(self, uri: str) -> None:
        """The service refuses a key type or size it does not take (caller holds world.lock)."""
        problem = key_problem(self.world, uri, sizes=SIZES) or self.refuses(uri)
        if problem:
            raise Refused(arm_error(400, "InvalidKey", f"The key '{uri}' cannot be used. {problem}"))

    def refuses(self, uri: str) -> str | None:
        """A further rule of the service's about the key version (MySQL's: no expiry)."""
        return None


class PostgresFlexibleServers(FlexibleServers):
    TYPE = "Microsoft.DBforPostgreSQL/flexibleServers"
    NAMESPACE = "Microsoft.DBforPostgreSQL"
    ENGINE, VERSION = "postgres", "17"

    def status(self, encryption: dict[str, Any], resource: KeyedResource) -> None:
        valid = key_problem(self.world, resource.key_ids[0]) is None
        encryption["primaryEncryptionKeyStatus"] = "Valid" if valid else "Invalid"
        if resource.options.get(GEO_KEY):
            geo_valid = key_problem(self.world, resource.options[GEO_KEY]) is None
            encryption["geoBackupEncryptionKeyStatus"] = "Valid" if geo_valid else "Invalid"


class MySqlFlexibleServers(FlexibleServers):
    TYPE = "Microsoft.DBforMySQL/flexibleServers"
    NAMESPACE = "Microsoft.DBforMySQL"
    ENGINE, VERSION = "mysql", "8.0.21"

    def refuses(self, uri: str) -> str | None:
        """MySQL's docs list "the expiration date isn't set" among the key's requirements."""
        parts = key_parts(uri)
        vault = self.world.vault_for_host(parts["keyVaultUri"].removeprefix("https://"))
        key = vault.key(parts["keyName"]) if vault else None
        version = (key.find(parts["keyVersion"]) if parts["keyVersion"] else key.latest()) if key else None
        if version is not None and version.exp is not None:
            return "MySQL requires a key without an expiration date."
        return None
