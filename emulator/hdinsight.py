"""Microsoft.HDInsight/clusters (api-version 2021-06-01 shapes): disk encryption's key in
`properties.diskEncryptionProperties.{vaultUri, keyName, keyVersion, msiResourceId}`. The key is
moved by the action `POST .../rotatediskencryptionkey` with `{vaultUri, keyName, keyVersion}`,
long-running: 202 with `Location` at the cluster (`clusters/{c}/operationresults/{id}`), as the
spec's example answers (2025-01-15-preview RotateLinuxHadoopClusterDiskEncryptionKey); the cluster keeps the
identity it has (`msiResourceId`). A PATCH of a cluster (tags only in the spec) is not served."""

from __future__ import annotations

from typing import Any

from .arm import ArmService, arm_error
from .cmk import KeyedProvider, Refused, key_parts, key_url
from .state import KeyedResource


class HDInsightClusters(KeyedProvider):
    TYPE = "Microsoft.HDInsight/clusters"
    NAMESPACE = "Microsoft.HDInsight"
    WRITABLE = False  # no PATCH route: the key moves through the action below
    WRITE_SHAPE = "location202"
    BUSY_STATE = "InProgress"  # HDInsight's ClusterProvisioningState while an operation runs

    def __init__(self, arm: ArmService) -> None:
        super().__init__(arm)
        arm.router.add("POST", self.item + "/rotatediskencryptionkey", self.patch)

    def properties(self, resource: KeyedResource, name: str) -> dict[str, Any]:
        parts = key_parts(resource.key_ids[0])
        disk = {
            "vaultUri": parts["keyVaultUri"],
            "keyName": parts["keyName"],
            "keyVersion": parts["keyVersion"],
            "msiResourceId": resource.key_identity,
            "encryptionAlgorithm": "RSA-OAEP",
            "encryptionAtHost": False,
        }
        return {
            "provisioningState": resource.provisioning_state,
            "clusterState": "Running",
            "clusterVersion": "5.1.3000.0",
            "osType": "Linux",
            "tier": "Standard",
            "clusterDefinition": {"kind": "spark"},
            "diskEncryptionProperties": disk,
        }

    def requested(self, body: dict[str, Any], resource: KeyedResource) -> tuple[list[str], str | None]:
        if not body.get("vaultUri") or not body.get("keyName") or not body.get("keyVersion"):
            raise Refused(arm_error(400, "InvalidRequest", "vaultUri, keyName and keyVersion are required."))
        return [key_url(body["vaultUri"], body["keyName"], body["keyVersion"])], resource.key_identity
