"""Batch accounts encrypted with a customer-managed key. The update is a synchronous PATCH of
`properties.encryption` only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rotation.azure.kinds import ApplyContext, Consumer, ManagedTargetKind, tags_of, text
from rotation.model.errors import Hint
from rotation.model.ids import BATCH_ACCOUNT, InvalidId, KeyRef, parse_key_id, parse_resource_id

if TYPE_CHECKING:
    from rotation.azure.clients import Clients


def to_consumer(account: Any) -> Consumer | None:
    encryption = getattr(account, "encryption", None)
    vault_properties = getattr(encryption, "key_vault_properties", None)
    if encryption is None or text(encryption.key_source) != "Microsoft.KeyVault" or vault_properties is None:
        return None
    try:
        key = parse_key_id(vault_properties.key_identifier)
        resource_id = parse_resource_id(account.id, (BATCH_ACCOUNT,))
    except InvalidId:
        return None
    identity = getattr(account, "identity", None)
    identity_type = text(getattr(identity, "type", None))
    has_identity = identity_type not in ("", "None")
    return Consumer(
        kind="batch",
        resource_id=resource_id,
        key=key,
        location=account.location,
        tags=tags_of(account),
        identity=identity_type if has_identity else None,
        identity_assigned=has_identity,
        provisioning_state=text(getattr(account, "provisioning_state", None)) or None,
        follows_new_versions=key.version is None,  # versionless + the key's rotation policy
    )


class BatchAccounts(ManagedTargetKind):
    kind = "batch"
    resource_type = BATCH_ACCOUNT
    api_version = "2025-06-01"  # what the pinned azure-mgmt-batch client sends (tested)
    hints = (
        Hint(
            400,
            None,
            "The Batch account could not use the key: check its managed identity has get, wrapKey and unwrapKey "
            "on the key and that the version is enabled; see "
            "https://learn.microsoft.com/azure/batch/batch-customer-managed-key.",
        ),
    )

    def operations(self, clients: Clients, subscription: str) -> Any:
        return clients.batch(subscription).batch_account

    def to_consumer(self, resource: Any) -> Consumer | None:
        return to_consumer(resource)

    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        body = {
            "properties": {
                "encryption": {
                    "keySource": "Microsoft.KeyVault",
                    "keyVaultProperties": {"keyIdentifier": to_key.id},
                }
            }
        }
        account = clients.batch(consumer.resource_id.subscription).batch_account.update(
            consumer.resource_id.resource_group, consumer.resource_id.name, body
        )
        return to_consumer(account)  # the PATCH answers with the account as it now is
