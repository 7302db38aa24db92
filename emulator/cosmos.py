"""Microsoft.DocumentDB/databaseAccounts (api-version 2024-11-15 shapes), for reads: the
product never writes an account (Cosmos DB follows a versionless `keyVaultKeyUri` itself)."""

from __future__ import annotations

from typing import Any

from .cmk import KeyedProvider
from .state import KeyedResource


class CosmosAccounts(KeyedProvider):
    TYPE = "Microsoft.DocumentDB/databaseAccounts"
    NAMESPACE = "Microsoft.DocumentDB"
    WRITABLE = False

    def properties(self, resource: KeyedResource, name: str) -> dict[str, Any]:
        if resource.key_identity:
            default_identity = f"UserAssignedIdentity={resource.key_identity}"
        elif resource.system_principal:
            default_identity = "SystemAssignedIdentity"
        else:
            default_identity = "FirstPartyIdentity"
        return {
            "provisioningState": resource.provisioning_state,
            "documentEndpoint": f"https://{name.lower()}.documents.azure.com:443/",
            "databaseAccountOfferType": "Standard",
            "keyVaultKeyUri": resource.key_ids[0],
            "defaultIdentity": default_identity,
            "locations": [{"locationName": resource.location, "failoverPriority": 0}],
        }

    def decorate(self, body: dict[str, Any], resource: KeyedResource) -> None:
        body["kind"] = "GlobalDocumentDB"
