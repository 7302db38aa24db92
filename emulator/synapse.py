"""Microsoft.Synapse/workspaces (api-version 2021-06-01 shapes), for reads: the active
workspace key in `properties.encryption.cmk.key.{name, keyVaultUrl}` with `cmk.kekIdentity`, and
the workspace's keys as child resources (`workspaces/{ws}/keys`, `{isActiveCMK, keyVaultUrl}`).
The product never writes a workspace (the docs' rotation is a switch of keys by a person)."""

from __future__ import annotations

from typing import Any

from .arm import ArmService, not_found
from .cmk import KeyedProvider
from .http import Request, Response
from .state import KeyedResource


class SynapseWorkspaces(KeyedProvider):
    TYPE = "Microsoft.Synapse/workspaces"
    NAMESPACE = "Microsoft.Synapse"
    WRITABLE = False

    def __init__(self, arm: ArmService) -> None:
        super().__init__(arm)
        arm.router.add("GET", self.item + "/keys", self.keys)

    def key_name(self, resource: KeyedResource) -> str:
        return str(resource.options.get("workspaceKeyName") or "default")

    def properties(self, resource: KeyedResource, name: str) -> dict[str, Any]:
        kek: dict[str, Any] = {"useSystemAssignedIdentity": resource.key_identity is None}
        if resource.key_identity:
            kek["userAssignedIdentity"] = resource.key_identity
        cmk = {
            "status": "Enabled",
            "kekIdentity": kek,
            "key": {"name": self.key_name(resource), "keyVaultUrl": resource.key_ids[0]},
        }
        return {
            "provisioningState": resource.provisioning_state,
            "connectivityEndpoints": {"sql": f"{name.lower()}.sql.azuresynapse.net"},
            "managedResourceGroupName": f"synapseworkspace-managedrg-{name.lower()}",
            "encryption": {"doubleEncryptionEnabled": True, "cmk": cmk},
        }

    def keys(self, request: Request, sub: str, group: str, name: str) -> Response:
        with self.world.lock:
            resource = self.find(sub, group, name)
            if resource is None:
                return not_found(self.TYPE, name, group)
            key = self.key_name(resource)
            item = {
                "id": f"{resource.id}/keys/{key}",
                "name": key,
                "type": "Microsoft.Synapse/workspaces/keys",
                "properties": {"isActiveCMK": True, "keyVaultUrl": resource.key_ids[0]},
            }
        return self.arm.page(request, [item])
