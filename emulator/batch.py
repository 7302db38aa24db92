"""Microsoft.Batch/batchAccounts (api-version 2025-06-01 shapes). PATCH is synchronous."""

from __future__ import annotations

from typing import Any

from .arm import arm_error, identity_block, key_problem
from .cmk import ArmResourceRoutes
from .http import Request, Response
from .state import BatchAccount, arm_parts

TYPE = "Microsoft.Batch/batchAccounts"


class BatchAccounts(ArmResourceRoutes[BatchAccount]):
    TYPE = TYPE
    WRITABLE = True  # a synchronous PATCH

    def resources(self) -> dict[str, BatchAccount]:
        return self.world.batch_accounts

    def render(self, account: BatchAccount) -> dict[str, Any]:
        name = arm_parts(account.id)["name"]
        encryption: dict[str, Any] = {"keySource": "Microsoft.Batch"}
        if account.key_id:
            encryption = {
                "keySource": "Microsoft.KeyVault",
                "keyVaultProperties": {"keyIdentifier": account.key_id},
            }
        body: dict[str, Any] = {
            "id": account.id,
            "name": name,
            "type": TYPE,
            "location": account.location,
            "tags": dict(account.tags),
            "properties": {
                "accountEndpoint": f"{name.lower()}.{account.location}.batch.azure.com",
                "nodeManagementEndpoint": f"{name.lower()}.{account.location}.service.batch.azure.com",
                "provisioningState": account.provisioning_state,
                "poolAllocationMode": "BatchService",
                "publicNetworkAccess": "Enabled",
                "encryption": encryption,
                "dedicatedCoreQuota": 500,
                "lowPriorityCoreQuota": 500,
                "poolQuota": 100,
                "activeJobAndJobScheduleQuota": 300,
                "allowedAuthenticationModes": ["AAD", "TaskAuthenticationToken"],
            },
        }
        identity = identity_block(self.world, account.identities, account.system_principal)
        if identity:
            body["identity"] = identity
        return body

    def write(self, request: Request, account: BatchAccount, body: dict[str, Any], name: str) -> Response:
        encryption = (body.get("properties") or {}).get("encryption")
        new_key = account.key_id
        if encryption is not None:
            source = encryption.get("keySource")
            if source == "Microsoft.KeyVault":
                new_key = (encryption.get("keyVaultProperties") or {}).get("keyIdentifier")
                if not (account.identities or account.system_principal):
                    return arm_error(
                        400,
                        "AccountIdentityMissing",
                        f"Batch account '{name}' needs a managed identity to use a customer-"
                        "managed key. Assign one, and grant it access to the key.",
                    )
                names = tuple(n for i in account.identities for n in (i, self.world.identity(i).principal_id))
                problem = key_problem(
                    self.world,
                    new_key,
                    identities=names + ((account.system_principal,) if account.system_principal else ()),
                )
                if problem:
                    return arm_error(
                        400,
                        "KeyVaultKeyNotAccessible",
                        f"The Batch account '{name}' could not use key '{new_key}'. {problem}",
                    )
            elif source == "Microsoft.Batch":
                new_key = None
            else:
                return arm_error(
                    400,
                    "InvalidRequestBody",
                    f"encryption.keySource must be Microsoft.Batch or Microsoft.KeyVault, got '{source}'.",
                )
        account.key_id = new_key
        if body.get("tags") is not None:
            account.tags = dict(body["tags"])
        return Response.json(200, self.render(account))
