"""Batch accounts encrypted with a customer-managed key. The update is a synchronous PATCH of
`properties.encryption` only.

Listed, read and written through the generic ARM client in the wire format, with the
api-version the pinned azure-mgmt-batch client sends (its typed models cost CPU per account
for the few fields read here; docs/performance.md, "CPU per target")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import rotation.azure.kinds.armkind as a
from rotation.azure.kinds.protocol import ApplyContext
from rotation.model.consumer import Consumer
from rotation.model.errors import Hint
from rotation.model.ids import BATCH_ACCOUNT, InvalidId, KeyRef, parse_key_id

if TYPE_CHECKING:
    from rotation.azure.clients import Clients


def to_consumer(account: Mapping[str, Any]) -> Consumer | None:
    encryption = a.properties(account).get("encryption")
    encryption = encryption if isinstance(encryption, dict) else {}
    vault_properties = encryption.get("keyVaultProperties")
    if encryption.get("keySource") != "Microsoft.KeyVault" or not isinstance(vault_properties, dict):
        return None
    resource_id = a.resource_id_of(account, BATCH_ACCOUNT)
    try:
        key = parse_key_id(str(vault_properties.get("keyIdentifier") or ""))
    except InvalidId:
        return None
    if resource_id is None:
        return None
    identity = account.get("identity")
    identity_type = str((identity if isinstance(identity, dict) else {}).get("type") or "")
    has_identity = identity_type not in ("", "None")
    return Consumer(
        kind="batch",
        resource_id=resource_id,
        key=key,
        location=str(account.get("location") or ""),
        tags=a.tags(account),
        identity=identity_type if has_identity else None,
        identity_assigned=has_identity,
        provisioning_state=str(a.properties(account).get("provisioningState") or "") or None,
        follows_new_versions=key.version is None,  # versionless + the key's rotation policy
    )


class BatchAccounts(a.ArmTargetKind):
    kind = "batch"
    resource_type = BATCH_ACCOUNT
    arm_actions = (  # the PATCH is synchronous
        "Microsoft.Batch/batchAccounts/read",
        "Microsoft.Batch/batchAccounts/write",
    )
    api_version = "2025-06-01"  # what the pinned azure-mgmt-batch client sends (tested)
    hints = (  # status-specific, not derived from `remediation`
        Hint(
            400,
            None,
            "The Batch account could not use the key: check its managed identity has get, wrapKey and unwrapKey "
            "on the key and that the version is enabled; see "
            "https://learn.microsoft.com/azure/batch/batch-customer-managed-key.",
        ),
    )

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        return a.one(to_consumer(resource))

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        encryption = {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {"keyIdentifier": to_key.id}}
        return {"properties": {"encryption": encryption}}

    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        account = clients.arm().patch(consumer.target, self.api_version, self.write_body(consumer, to_key))
        return to_consumer(account) if account is not None else None  # the PATCH answers with the account
