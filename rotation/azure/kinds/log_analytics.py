"""Log Analytics dedicated clusters (Microsoft.OperationalInsights/clusters) with a
customer-managed key in `properties.keyVaultProperties.{keyVaultUri, keyName, keyVersion}`.

An empty keyVersion makes the cluster follow the key's newest version itself. A pinned one is
moved by a long-running PATCH of keyVaultProperties only; the cluster's identity (the one it
unwraps with) is left as it is. The service can take a while to re-wrap, so the write is polled
for at most `WAIT_SECONDS`, and never past the run's time budget; past that the run re-reads the
cluster (Updating: retried within the budget) and a later run verifies what is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.azure.kinds.protocol import KEY_PARTS
from rotation.model.consumer import Consumer
from rotation.model.ids import LOG_ANALYTICS_CLUSTER, KeyRef

API_VERSION = "2023-09-01"
WAIT_SECONDS = 120.0
REMEDIATION = {
    "keyvaultaccessfailed": "The cluster's managed identity cannot use the key version: grant it 'Key Vault "
    "Crypto Service Encryption User' on the key (or get, wrapKey, unwrapKey) and allow trusted services "
    "through the vault firewall; see https://learn.microsoft.com/azure/azure-monitor/logs/customer-managed-keys.",
    "identitynotassigned": "The cluster has no managed identity: assign one (az monitor log-analytics cluster "
    "update --identity-type) and grant it access to the key.",
}


class LogAnalyticsClusters(a.ArmTargetKind):
    kind = "loganalytics"
    key_naming = KEY_PARTS  # keyVaultUri, keyName, keyVersion
    resource_type = LOG_ANALYTICS_CLUSTER
    arm_actions = (  # the PATCH is long-running
        "Microsoft.OperationalInsights/clusters/read",
        "Microsoft.OperationalInsights/clusters/write",
        "Microsoft.OperationalInsights/locations/operationStatuses/read",
    )
    api_version = API_VERSION
    polls_resource = True  # ClusterProperties.provisioningState: Updating until the PATCH ends
    remediation = REMEDIATION

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        resource_id = a.resource_id_of(resource, self.resource_type)
        key = a.vault_key(a.properties(resource).get("keyVaultProperties"))
        if resource_id is None or key is None:
            return []
        identity = a.own_identity(resource)
        return [a.consumer(self.kind, resource_id, resource, key, identity, follows=key.version is None)]

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        return {"properties": {"keyVaultProperties": a.vault_entry(to_key)}}

    def write_wait(self) -> float | None:
        return WAIT_SECONDS  # the run's budget ends a wait past it (BudgetExhausted) as any other
