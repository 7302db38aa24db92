"""Microsoft.Databricks/workspaces (api-version 2026-01-01 shapes, the spec's WorkspaceGet,
EnableEncryption and WorkspaceManagedDiskEncryptionUpdate examples): a key in up to three places,
`properties.encryption.entities.managedServices.keyVaultProperties` (reached by the
AzureDatabricks first-party application), `...entities.managedDisk.keyVaultProperties` with
`rotationToLatestKeyVersionEnabled` (the workspace's `managedDiskIdentity`) and the DBFS root's
`properties.parameters.encryption.value.{keySource, KeyName, keyversion, keyvaulturi}` (its
`storageAccountIdentity`). The PUT is long-running and answers as the real service does (a
recorded answer, azure-sdk-for-js's Databricks test recordings): 201 with the workspace `Accepted`
and `Azure-AsyncOperation` at `resourceGroups/{g}/providers/Microsoft.Databricks/locations/{l}/
operationStatuses/{id}`, the one status type Databricks registers as an RBAC operation (the spec
declares a `Location` header; the `lroShapes` setting still serves that shape). It honours
`If-Match` against the `ETag` a GET answers."""

from __future__ import annotations

from typing import Any

from .cmk import key_url
from .documents import DocumentProvider
from .state import ArmDocument, stable_uuid

FIRST_PARTY = "AzureDatabricks"  # what managed services reach the key as (deniedIdentities may name it)
TENANT = "72f988bf-0000-4000-8000-00000000c0de"


def disk_principal(resource_id: str) -> str:
    return stable_uuid("managed-disk:" + resource_id)


def dbfs_principal(resource_id: str) -> str:
    return stable_uuid("dbfs-storage:" + resource_id)


def entity_blocks(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """entity -> its key block ({keyVaultUri, keyName, keyVersion}; DBFS: the spec's casing)."""
    properties = document.get("properties") or {}
    entities = ((properties.get("encryption") or {}).get("entities")) or {}
    found = {
        name: entities[name]["keyVaultProperties"]
        for name in ("managedServices", "managedDisk")
        if isinstance(entities.get(name), dict) and isinstance(entities[name].get("keyVaultProperties"), dict)
    }
    dbfs = ((properties.get("parameters") or {}).get("encryption") or {}).get("value")
    if isinstance(dbfs, dict) and str(dbfs.get("keySource", "")).lower() == "microsoft.keyvault":
        found["dbfsRoot"] = {
            "keyVaultUri": dbfs.get("keyvaulturi"),
            "keyName": dbfs.get("KeyName"),
            "keyVersion": dbfs.get("keyversion"),
        }
    return found


class DatabricksWorkspaces(DocumentProvider):
    TYPE = "Microsoft.Databricks/workspaces"
    NAMESPACE = "Microsoft.Databricks"
    LONG_RUNNING = True
    WRITE_SHAPE = "async201"  # a recorded answer: 201, the workspace Accepted, Azure-AsyncOperation
    READ_ONLY = (
        "provisioningState",
        "createdDateTime",
        "workspaceId",
        "workspaceUrl",
        "diskEncryptionSetId",
        "managedDiskIdentity",
        "storageAccountIdentity",
    )

    def served(self, resource: ArmDocument, properties: dict[str, Any]) -> None:
        number = str(int(stable_uuid(resource.id).replace("-", "")[:13], 16))[:16]
        properties.update(workspaceId=number, workspaceUrl=f"adb-{number}.19.azuredatabricks.net")
        properties["createdDateTime"] = "2026-01-05T09:12:44.2858439Z"
        for value in (properties.get("parameters") or {}).values():
            if isinstance(value, dict):  # each custom parameter's type (read-only)
                value["type"] = "Object" if isinstance(value.get("value"), dict) else "String"
        blocks = entity_blocks({"properties": properties})
        if "managedDisk" in blocks:
            properties["managedDiskIdentity"] = {
                "type": "SystemAssigned",
                "principalId": disk_principal(resource.id),
                "tenantId": TENANT,
            }
            group = str(properties.get("managedResourceGroupId") or "/subscriptions/x/resourceGroups/managed")
            properties["diskEncryptionSetId"] = (
                f"{group}/providers/Microsoft.Compute/diskEncryptionSets/dbr-des"
            )
        if "dbfsRoot" in blocks:
            properties["storageAccountIdentity"] = {
                "type": "SystemAssigned",
                "principalId": dbfs_principal(resource.id),
                "tenantId": TENANT,
            }

    def keys_in(
        self, document: dict[str, Any], resource: ArmDocument
    ) -> list[tuple[str, tuple[str, ...], str]]:
        who = {
            "managedServices": (FIRST_PARTY,),
            "managedDisk": (disk_principal(resource.id),),
            "dbfsRoot": (dbfs_principal(resource.id),),
        }
        return [
            (
                key_url(b.get("keyVaultUri"), b.get("keyName"), b.get("keyVersion")),
                who[name],
                f"The workspace's {name}",
            )
            for name, b in entity_blocks(document).items()
        ]
