"""Azure Data Explorer clusters (Microsoft.Kusto/clusters) with a customer-managed key in
`properties.keyVaultProperties.{keyVaultUri, keyName, keyVersion, userIdentity}`.

Per the service's docs an empty keyVersion means "the latest version", followed by the service
itself; a pinned version is moved by a long-running PATCH of keyVaultProperties, naming the same
`userIdentity` (a user-assigned identity's resource id; empty for the system-assigned one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.azure.kinds.protocol import KEY_PARTS
from rotation.model.consumer import Consumer
from rotation.model.ids import KUSTO_CLUSTER, KeyRef

API_VERSION = "2023-08-15"
REMEDIATION = {
    "keyvaultaccessfailed": "The cluster's identity cannot use the key version: grant it get, wrapKey and "
    "unwrapKey on the key (or 'Key Vault Crypto Service Encryption User') and check the vault's soft-delete "
    "and purge protection; see https://learn.microsoft.com/azure/data-explorer/customer-managed-keys-portal.",
}


class KustoClusters(a.ArmTargetKind):
    kind = "kusto"
    key_naming = KEY_PARTS  # keyVaultUri, keyName, keyVersion
    resource_type = KUSTO_CLUSTER
    arm_actions = (  # the PATCH is long-running
        "Microsoft.Kusto/clusters/read",
        "Microsoft.Kusto/clusters/write",
        "Microsoft.Kusto/locations/operationResults/read",
    )
    api_version = API_VERSION
    polls_resource = True  # ClusterProperties.provisioningState: Updating/Running until the PATCH ends
    remediation = REMEDIATION

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        resource_id = a.resource_id_of(resource, self.resource_type)
        vault_properties = a.properties(resource).get("keyVaultProperties")
        key = a.vault_key(vault_properties)
        if resource_id is None or key is None or not isinstance(vault_properties, dict):
            return []
        named = str(vault_properties.get("userIdentity") or "") or None
        identity = a.identity_fact(resource, named)
        return [a.consumer(self.kind, resource_id, resource, key, identity, follows=key.version is None)]

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        entry: dict[str, str] = a.vault_entry(to_key)
        if consumer.identity and consumer.identity != "SystemAssigned":
            entry["userIdentity"] = consumer.identity
        return {"properties": {"keyVaultProperties": entry}}
