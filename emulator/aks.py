"""Microsoft.ContainerService/managedClusters (api-version 2025-10-02-preview shapes), for reads:
KMS etcd encryption in `properties.securityProfile.azureKeyVaultKms`, and with the scenario's
`infrastructureEncryption: "Enabled"` KMS data encryption's
`securityProfile.kubernetesResourceObjectEncryptionProfile` beside it. The product never writes
a cluster (a whole-cluster PUT, then the secrets re-encrypted by a person)."""

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
        security: dict[str, Any] = {"azureKeyVaultKms": kms}
        infrastructure = resource.options.get("infrastructureEncryption")
        if infrastructure:
            security["kubernetesResourceObjectEncryptionProfile"] = {
                "infrastructureEncryption": infrastructure
            }
        return {
            "provisioningState": resource.provisioning_state,
            "powerState": {"code": "Running"},
            "kubernetesVersion": "1.33.0" if infrastructure else "1.30.6",
            "dnsPrefix": name.lower(),
            "fqdn": f"{name.lower()}-dns.hcp.{resource.location}.azmk8s.io",
            "securityProfile": security,
        }

    def decorate(self, body: dict[str, Any], resource: KeyedResource) -> None:
        body["sku"] = {"name": "Base", "tier": "Standard"}
