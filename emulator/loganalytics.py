"""Microsoft.OperationalInsights/clusters (api-version 2023-09-01 shapes): the key in
`properties.keyVaultProperties`; PATCH is long-running, answering 200 with the cluster
`Updating` until the re-wrap ends (the body is what to poll). The cluster reaches the key with its one identity."""

from __future__ import annotations

from typing import Any

from .arm import arm_error
from .cmk import KeyedProvider, Refused, key_parts, key_url
from .state import KeyedResource, stable_uuid


class LogAnalyticsClusters(KeyedProvider):
    TYPE = "Microsoft.OperationalInsights/clusters"
    NAMESPACE = "Microsoft.OperationalInsights"
    WRITE_SHAPE = "body200"  # the spec: PATCH answers 200 with the cluster to poll until it settles

    def properties(self, resource: KeyedResource, name: str) -> dict[str, Any]:
        return {
            "clusterId": stable_uuid("cluster:" + resource.id),
            "provisioningState": resource.provisioning_state,
            "billingType": "Cluster",
            "isDoubleEncryptionEnabled": True,
            "isAvailabilityZonesEnabled": False,
            "keyVaultProperties": {**key_parts(resource.key_ids[0]), "keyRsaSize": 2048},
            "associatedWorkspaces": [],
            "capacityReservationProperties": {"minCapacity": 100},
        }

    def decorate(self, body: dict[str, Any], resource: KeyedResource) -> None:
        body["sku"] = {"name": "CapacityReservation", "capacity": 100}

    def requested(self, body: dict[str, Any], resource: KeyedResource) -> tuple[list[str], str | None]:
        vault = (body.get("properties") or {}).get("keyVaultProperties")
        if not isinstance(vault, dict) or not vault.get("keyVaultUri") or not vault.get("keyName"):
            raise Refused(
                arm_error(400, "InvalidParameter", "keyVaultProperties needs keyVaultUri and keyName.")
            )
        url = key_url(vault["keyVaultUri"], vault["keyName"], vault.get("keyVersion"))
        return [url], resource.key_identity  # a cluster has one identity; the PATCH does not name it
