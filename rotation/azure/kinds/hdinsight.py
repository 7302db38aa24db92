"""HDInsight clusters (Microsoft.HDInsight/clusters, api-version 2021-06-01) whose managed and
resource disks are encrypted with a customer-managed key:
`properties.diskEncryptionProperties.{vaultUri, keyName, keyVersion, msiResourceId}`.

The cluster reaches the key with the user-assigned identity `msiResourceId` (the docs create
the cluster with one; it must still be assigned, else `identity-not-assigned`). A cluster does
not follow new versions by itself: the write is the action `POST .../clusters/{name}/
rotatediskencryptionkey` with `{vaultUri, keyName, keyVersion}` (the spec's example answers 200,
or 202 with `Location`: long-running, its final state at that URL, which carries no cluster), so
the cluster is read back with a GET and verified on `keyVersion`. The docs accept only Key Vault
keys ("HDInsight only supports Azure Key Vault"): a Managed HSM key never reaches this kind, so
it has no HSM form. Key types: RSA keys in the vault, of the sizes Key Vault creates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import rotation.azure.kinds.armkind as a
from rotation.azure.kinds.protocol import KEY_PARTS, ApplyContext
from rotation.model.consumer import Consumer
from rotation.model.decisions import Check
from rotation.model.ids import InvalidId, KeyRef, key_from_parts

if TYPE_CHECKING:
    from rotation.azure.clients import Clients

API_VERSION = "2021-06-01"
KIND = "hdinsight"
RESOURCE_TYPE = "Microsoft.HDInsight/clusters"
ACCEPTED_KEYS = {"RSA": (2048, 3072, 4096), "RSA-HSM": (2048, 3072, 4096)}
REMEDIATION = {
    "": "The HDInsight cluster could not use the key: check that its managed identity (msiResourceId) has get, "
    "wrapKey and unwrapKey on the key (or 'Key Vault Crypto Service Encryption User') and that the vault has "
    "soft delete and purge protection; see https://learn.microsoft.com/azure/hdinsight/disk-encryption.",
}


def to_consumer(cluster: Mapping[str, Any]) -> Consumer | None:
    disk = a.properties(cluster).get("diskEncryptionProperties")
    resource_id = a.resource_id_of(cluster, RESOURCE_TYPE)
    if (
        resource_id is None
        or not isinstance(disk, dict)
        or not disk.get("vaultUri")
        or not disk.get("keyName")
    ):
        return None
    try:
        key = key_from_parts(str(disk["vaultUri"]), str(disk["keyName"]), disk.get("keyVersion") or None)
    except InvalidId:
        return None
    named = str(disk.get("msiResourceId") or "")
    identity = (named, named.lower() in a.user_assigned(cluster)) if named else ("no msiResourceId", False)
    return a.consumer(KIND, resource_id, cluster, key, identity, follows=False)


class HDInsightClusters(a.ArmTargetKind):
    kind = KIND
    key_naming = KEY_PARTS  # vaultUri, keyName, keyVersion
    resource_type = RESOURCE_TYPE
    arm_actions = (  # the rotate action is long-running: Location at the cluster (the spec's example)
        "Microsoft.HDInsight/clusters/read",
        "Microsoft.HDInsight/clusters/rotatediskencryptionkey/action",
        "Microsoft.HDInsight/clusters/operationresults/read",
    )
    api_version = API_VERSION
    remediation = REMEDIATION
    plan_checks: tuple[Check, ...] = (a.accepts_key_types("HDInsight", ACCEPTED_KEYS),)

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        return a.one(to_consumer(resource))

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        return {"vaultUri": to_key.vault_url, "keyName": to_key.name, "keyVersion": to_key.version or ""}

    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        """The rotate action followed to its end, then the cluster read back (the action's
        final answer is the operation's, not the cluster)."""
        action = f"{consumer.target}/rotatediskencryptionkey"
        clients.arm().write("POST", action, self.api_version, self.write_body(consumer, to_key))
        return self.read_key(clients, consumer.resource_id, to_key)
