"""AKS clusters (Microsoft.ContainerService/managedClusters) with KMS etcd encryption:
`properties.securityProfile.azureKeyVaultKms.{enabled, keyId, keyVaultNetworkAccess,
keyVaultResourceId}`.

Legacy KMS holds a versioned key id the cluster does not move off by itself. Never written by
this system: the update is a whole-cluster PUT, and after it every secret must be re-encrypted
with kubectl. Such a cluster is reported `manual-required` with the exact commands. It is listed
as holding its version like every consumer (so a guard refusing to disable a held version
protects it), and the message tells the person to keep the old version enabled until the
secrets are re-encrypted: until then etcd still holds data wrapped by it.

KMS data encryption (preview; read with api-version 2025-10-02-preview, the first whose spec
names it) adds `securityProfile.kubernetesResourceObjectEncryptionProfile.infrastructureEncryption:
"Enabled"` and takes a versionless `keyId` (learn.microsoft.com/azure/aks/kms-data-encryption:
"Get the key ID (without version for automatic rotation)"); the KMS controller detects a new
version (about every 6 hours, kms-data-encryption-concepts) and re-encrypts by itself, so such a
cluster is `auto-rotating`. A versioned keyId under it stays `manual-required`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.model.consumer import Consumer
from rotation.model.decisions import MANUAL_REQUIRED, Check, Decision, PolicyContext
from rotation.model.ids import MANAGED_CLUSTER, InvalidId, parse_key_id

API_VERSION = "2025-10-02-preview"  # the first api-version that shows infrastructureEncryption


def kms_of(resource: Mapping[str, Any]) -> dict[str, Any]:
    security = a.properties(resource).get("securityProfile")
    kms = security.get("azureKeyVaultKms") if isinstance(security, dict) else None
    return kms if isinstance(kms, dict) and kms.get("enabled") and kms.get("keyId") else {}


def infrastructure_encryption(resource: Mapping[str, Any]) -> bool:
    """KMS data encryption: the cluster re-encrypts with a versionless key's new versions itself."""
    security = a.properties(resource).get("securityProfile")
    profile = (
        security.get("kubernetesResourceObjectEncryptionProfile") if isinstance(security, dict) else None
    )
    return (
        isinstance(profile, dict) and str(profile.get("infrastructureEncryption") or "").lower() == "enabled"
    )


def commands(consumer: Consumer, new_key_id: str) -> str:
    rid = consumer.resource_id
    access = str(consumer.extra.get("keyVaultNetworkAccess") or "Public")
    update = (
        f"az aks update --subscription {rid.subscription} --resource-group {rid.resource_group} "
        f"--name {rid.name} --enable-azure-keyvault-kms --azure-keyvault-kms-key-id {new_key_id} "
        f"--azure-keyvault-kms-key-vault-network-access {access}"
    )
    if access == "Private" and consumer.extra.get("keyVaultResourceId"):
        update += f" --azure-keyvault-kms-key-vault-resource-id {consumer.extra['keyVaultResourceId']}"
    credentials = (
        f"az aks get-credentials --subscription {rid.subscription} --resource-group {rid.resource_group} "
        f"--name {rid.name}"
    )
    return (
        f"{update}; then {credentials}; kubectl get secrets --all-namespaces -o json | kubectl replace -f -"
    )


def manual_required(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    if consumer.kind != "aks" or ctx.state.desired is None:
        return None
    new_key_id = consumer.key.with_version(ctx.state.desired.version).id
    return Decision(
        MANUAL_REQUIRED,
        "kms-whole-cluster-update",
        f"AKS KMS keys are never written by this system (a whole-cluster update, then every secret "
        f"re-encrypted). Run: {commands(consumer, new_key_id)}. Keep version {consumer.version} enabled "
        "until the secrets are re-encrypted.",
    )


class ManagedClusters(a.ArmTargetKind):
    kind = "aks"
    resource_type = MANAGED_CLUSTER
    arm_actions = (  # seen, never written
        "Microsoft.ContainerService/managedClusters/read",
    )
    api_version = API_VERSION
    plan_checks: tuple[Check, ...] = (manual_required,)

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        resource_id = a.resource_id_of(resource, self.resource_type)
        kms = kms_of(resource)
        if resource_id is None or not kms:
            return []
        try:
            key = parse_key_id(str(kms["keyId"]))
        except InvalidId:
            return []
        identity = a.own_identity(resource)
        extra = {
            "keyVaultNetworkAccess": str(kms.get("keyVaultNetworkAccess") or "Public"),
            "keyVaultResourceId": str(kms.get("keyVaultResourceId") or ""),
        }
        follows = key.version is None and infrastructure_encryption(resource)
        return [a.consumer(self.kind, resource_id, resource, key, identity, follows=follows, extra=extra)]
