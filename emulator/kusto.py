"""Microsoft.Kusto/clusters (api-version 2023-08-15 shapes): the key in
`properties.keyVaultProperties` with the `userIdentity` it is reached with (empty: the
system-assigned identity); PATCH is long-running (202 + Azure-AsyncOperation)."""

from __future__ import annotations

from typing import Any

from .arm import arm_error
from .cmk import KeyedProvider, Refused, key_parts, key_url
from .state import KeyedResource


class KustoClusters(KeyedProvider):
    TYPE = "Microsoft.Kusto/clusters"
    NAMESPACE = "Microsoft.Kusto"
    ERROR_CODE = "KeyVaultAccessFailed"

    def properties(self, resource: KeyedResource, name: str) -> dict[str, Any]:
        vault: dict[str, Any] = {**key_parts(resource.key_ids[0])}
        vault["userIdentity"] = resource.key_identity or ""
        return {
            "provisioningState": resource.provisioning_state,
            "state": "Running",
            "uri": f"https://{name.lower()}.{resource.location}.kusto.windows.net",
            "dataIngestionUri": f"https://ingest-{name.lower()}.{resource.location}.kusto.windows.net",
            "enableDiskEncryption": True,
            "enableStreamingIngest": False,
            "keyVaultProperties": vault,
        }

    def decorate(self, body: dict[str, Any], resource: KeyedResource) -> None:
        body["sku"] = {"name": "Standard_E8ads_v5", "tier": "Standard", "capacity": 2}

    def requested(self, body: dict[str, Any], resource: KeyedResource) -> tuple[list[str], str | None]:
        vault = (body.get("properties") or {}).get("keyVaultProperties")
        if not isinstance(vault, dict) or not vault.get("keyVaultUri") or not vault.get("keyName"):
            raise Refused(arm_error(400, "BadRequest", "keyVaultProperties needs keyVaultUri and keyName."))
        url = key_url(vault["keyVaultUri"], vault["keyName"], vault.get("keyVersion"))
        return [url], vault.get("userIdentity") or None
