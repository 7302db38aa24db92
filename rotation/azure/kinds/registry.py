"""Container Registry (Premium) registries encrypted with a customer-managed key.

The update is what `az acr encryption rotate-key` does, with a minimal body: a PATCH of
`properties.encryption.keyVaultProperties` with the new key id and the identity the registry
already uses for encryption (a long-running operation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rotation.azure.kinds import ApplyContext, Consumer, ManagedTargetKind, tags_of, text
from rotation.model.errors import Hint
from rotation.model.ids import REGISTRY, InvalidId, KeyRef, parse_key_id, parse_resource_id

if TYPE_CHECKING:
    from rotation.azure.clients import Clients


def _assigned_identities(registry: Any) -> set[str]:
    """Client ids of user-assigned identities and the system principal, lower case."""
    identity = getattr(registry, "identity", None)
    if identity is None:
        return set()
    assigned = {(ua.client_id or "").lower() for ua in (identity.user_assigned_identities or {}).values()}
    if identity.principal_id:
        assigned.add(identity.principal_id.lower())
    return assigned - {""}


def to_consumer(registry: Any) -> Consumer | None:
    encryption = getattr(registry, "encryption", None)
    vault_properties = getattr(encryption, "key_vault_properties", None)
    if encryption is None or text(encryption.status).lower() != "enabled" or vault_properties is None:
        return None
    try:
        key = parse_key_id(vault_properties.key_identifier)
        resource_id = parse_resource_id(registry.id, (REGISTRY,))
    except InvalidId:
        return None
    identity = vault_properties.identity
    return Consumer(
        kind="registry",
        resource_id=resource_id,
        key=key,
        location=registry.location,
        tags=tags_of(registry),
        identity=identity,
        identity_assigned=bool(identity) and identity.lower() in _assigned_identities(registry),
        provisioning_state=text(getattr(registry, "provisioning_state", None)) or None,
        follows_new_versions=key.version is None,  # Azure moves a versionless registry within ~1 h
        # The version ACR actually encrypts with (read-only); the canary gate compares it.
        extra={"versionedKeyIdentifier": getattr(vault_properties, "versioned_key_identifier", None)},
    )


class Registries(ManagedTargetKind):
    kind = "registry"
    resource_type = REGISTRY
    api_version = "2025-11-01"  # what the pinned azure-mgmt-containerregistry client sends (tested)
    hints = (
        Hint(
            400,
            "invalididentity",
            "The registry's encryption identity is no longer assigned to it: assign the user-assigned identity "
            "back (az acr identity assign) and grant it 'Key Vault Crypto Service Encryption User' on the key; "
            "see https://aka.ms/acr/cmk.",
        ),
        Hint(
            400,
            "keyvaultaccessfailed",
            "The registry's identity cannot use the new key version: grant it 'Key Vault Crypto Service "
            "Encryption User' on the key (or get, wrapKey, unwrapKey in access policies) and check the vault "
            "firewall allows trusted services; see https://aka.ms/acr/cmk.",
        ),
    )

    def operations(self, clients: Clients, subscription: str) -> Any:
        return clients.registries(subscription).registries

    def to_consumer(self, resource: Any) -> Consumer | None:
        return to_consumer(resource)

    def healthy(self, consumer: Consumer) -> str | None:
        """ACR's own CMK status: `encryption.status` enabled (else no Consumer at all) and the
        version it reports using (`versionedKeyIdentifier`) is the one it was given."""
        used = consumer.extra.get("versionedKeyIdentifier")
        if consumer.version and used and not str(used).rstrip("/").lower().endswith("/" + consumer.version):
            return f"the registry reports it encrypts with {used} (versionedKeyIdentifier), not {consumer.version}"
        return None

    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        body = {
            "properties": {
                "encryption": {
                    "keyVaultProperties": {
                        "keyIdentifier": to_key.id,
                        "identity": consumer.identity,
                    }
                }
            }
        }
        poller = clients.registries(consumer.resource_id.subscription).registries.begin_update(
            consumer.resource_id.resource_group,
            consumer.resource_id.name,
            body,
            polling=clients.lro_polling(),  # first poll after the PATCH's Retry-After: one read fewer
        )
        return to_consumer(poller.result())  # the poller's final GET of the registry
