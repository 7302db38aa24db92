"""Microsoft.AppConfiguration/configurationStores (api-version 2024-06-01 shapes): the key in
`properties.encryption.keyVaultProperties.{keyIdentifier, identityClientId}`, the identity named
by a user-assigned identity's client id (null: the system-assigned one). PATCH is long-running:
201 with the store `Updating` and `Azure-AsyncOperation`, as the spec's example answers."""

from __future__ import annotations

from typing import Any

from .arm import arm_error
from .cmk import KeyedProvider, Refused
from .state import KeyedResource


class ConfigurationStores(KeyedProvider):
    TYPE = "Microsoft.AppConfiguration/configurationStores"
    NAMESPACE = "Microsoft.AppConfiguration"
    WRITE_SHAPE = "async201"

    def properties(self, resource: KeyedResource, name: str) -> dict[str, Any]:
        client_id = self.world.identity(resource.key_identity).client_id if resource.key_identity else None
        return {
            "provisioningState": resource.provisioning_state,
            "creationDate": "2026-01-12T09:30:55+00:00",
            "endpoint": f"https://{name.lower()}.azconfig.io",
            "encryption": {
                "keyVaultProperties": {"keyIdentifier": resource.key_ids[0], "identityClientId": client_id}
            },
            "disableLocalAuth": False,
            "softDeleteRetentionInDays": 7,
            "enablePurgeProtection": True,
            "publicNetworkAccess": "Enabled",
        }

    def decorate(self, body: dict[str, Any], resource: KeyedResource) -> None:
        body["sku"] = {"name": "Standard"}

    def requested(self, body: dict[str, Any], resource: KeyedResource) -> tuple[list[str], str | None]:
        vault = ((body.get("properties") or {}).get("encryption") or {}).get("keyVaultProperties")
        if not isinstance(vault, dict) or not vault.get("keyIdentifier"):
            raise Refused(
                arm_error(400, "InvalidRequest", "encryption.keyVaultProperties needs keyIdentifier.")
            )
        client_id = str(vault.get("identityClientId") or "")
        if not client_id:
            return [str(vault["keyIdentifier"])], None
        for identity in resource.identities:
            if self.world.identity(identity).client_id.lower() == client_id.lower():
                return [str(vault["keyIdentifier"])], identity
        raise Refused(
            arm_error(
                400,
                "InvalidIdentity",
                f"No user-assigned identity with client id '{client_id}' is assigned to the configuration store.",
            )
        )
