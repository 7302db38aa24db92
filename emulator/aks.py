"""Microsoft.ContainerService/managedClusters (api-version 2024-09-01 shapes), for reads: KMS
etcd encryption in `properties.securityProfile.azureKeyVaultKms`. The product never writes a
cluster (a whole-cluster PUT, then the secrets re-encrypted by a person)."""

from __future__ import annotations

from typing import Any

from .cmk import KeyedProvider
from .state import KeyedResource


class ManagedClusters(KeyedProvider):
    TYPE = "Microsoft.ContainerService/managedClusters"
    NAMESPACE = "Microsoft.ContainerService"
    WRITABLE = False

    def properties(self, resource: KeyedResource, name: str) -> dict[str, Any]:
        access = str(resource.options.get("keyVaultNetworkAccess") or "Public")
        kms: dict[str, Any] = {"enabled": True, "keyId": resource.key_ids[0], "keyVaultNetworkAccess": access}
        if resource.options.get("keyVaultResourceId"):
            kms["keyVaultResourceId"] = resource.options["keyVaultResourceId"]
        return {
            "provisioningState": resource.provisioning_state,
            "powerState": {"code": "Running"},
            "kubernetesVersion": "1.30.6",
            "dnsPrefix": name.lower(),
            "fqdn": f"{name.lower()}-dns.hcp.{resource.location}.azmk8s.io",
            "securityProfile": {"azureKeyVaultKms": kms},
        }

    def decorate(self, body: dict[str, Any], resource: KeyedResource) -> None:
        body["sku"] = {"name": "Base", "tier": "Standard"}
