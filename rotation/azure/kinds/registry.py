"""Container Registry (Premium) registries encrypted with a customer-managed key.

The update is what `az acr encryption rotate-key` does, with a minimal body: a PATCH of
`properties.encryption.keyVaultProperties` with the new key id and the identity the registry
already uses for encryption (a long-running operation).

Listed, read and written through the generic ARM client (rotation/azure/arm.py) in the wire
format, with the api-version the pinned azure-mgmt-containerregistry client sends: building
and reading that client's typed models cost more CPU per registry than the rest of its update
(docs/performance.md, "CPU per target"), for the few fields read here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import rotation.azure.kinds.armkind as a
from rotation.azure.kinds.protocol import ApplyContext
from rotation.model.consumer import Consumer
from rotation.model.errors import Hint
from rotation.model.ids import REGISTRY, InvalidId, KeyRef, parse_key_id

if TYPE_CHECKING:
    from rotation.azure.clients import Clients


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


SYSTEM_IDENTITY = "system"  # ACR's reserved word for the system-assigned identity (az acr encryption)


def _assigned_identities(registry: Mapping[str, Any]) -> set[str]:
    """The names `keyVaultProperties.identity` may give an identity the registry has, lower case:
    a user-assigned identity's client id; for the system-assigned one, ACR's reserved word
    `system` (what `az acr encryption rotate-key --identity [system]` writes) or its principal id."""
    identity = _dict(registry.get("identity"))
    users = _dict(identity.get("userAssignedIdentities")).values()
    assigned = {str(_dict(ua).get("clientId") or "").lower() for ua in users}
    if identity.get("principalId") or "systemassigned" in str(identity.get("type") or "").lower():
        assigned |= {SYSTEM_IDENTITY, str(identity.get("principalId") or "").lower()}
    return assigned - {""}


def to_consumer(registry: Mapping[str, Any]) -> Consumer | None:
    encryption = _dict(a.properties(registry).get("encryption"))
    vault_properties = encryption.get("keyVaultProperties")
    if str(encryption.get("status") or "").lower() != "enabled" or not isinstance(vault_properties, dict):
        return None
    resource_id = a.resource_id_of(registry, REGISTRY)
    try:
        key = parse_key_id(str(vault_properties.get("keyIdentifier") or ""))
    except InvalidId:
        return None
    if resource_id is None:
        return None
    identity = vault_properties.get("identity")
    return Consumer(
        kind="registry",
        resource_id=resource_id,
        key=key,
        location=str(registry.get("location") or ""),
        tags=a.tags(registry),
        identity=identity,
        identity_assigned=bool(identity) and str(identity).lower() in _assigned_identities(registry),
        provisioning_state=str(a.properties(registry).get("provisioningState") or "") or None,
        follows_new_versions=key.version is None,  # Azure moves a versionless registry within ~1 h
        # The version ACR actually encrypts with (read-only); the canary gate compares it.
        extra={"versionedKeyIdentifier": vault_properties.get("versionedKeyIdentifier")},
    )


class Registries(a.ArmTargetKind):
    kind = "registry"
    resource_type = REGISTRY
    arm_actions: tuple[str, ...] = (  # the PATCH is long-running: its status is read at either of two URLs
        "Microsoft.ContainerRegistry/registries/read",
        "Microsoft.ContainerRegistry/registries/write",
        "Microsoft.ContainerRegistry/locations/operationResults/read",
        "Microsoft.ContainerRegistry/registries/operationStatuses/read",
    )
    api_version = "2025-11-01"  # what the pinned azure-mgmt-containerregistry client sends (tested)
    polls_resource = True  # RegistryProperties.provisioningState: Updating until the PATCH ends
    hints = (  # status-specific, not derived from `remediation`
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

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        return a.one(to_consumer(resource))

    def healthy(self, consumer: Consumer) -> str | None:
        """ACR's own CMK status: `encryption.status` enabled (else no Consumer at all) and the
        version it reports using (`versionedKeyIdentifier`) is the one it was given."""
        used = consumer.extra.get("versionedKeyIdentifier")
        if consumer.version and used and not str(used).rstrip("/").lower().endswith("/" + consumer.version):
            return f"the registry reports it encrypts with {used} (versionedKeyIdentifier), not {consumer.version}"
        return None

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        keys = {"keyIdentifier": to_key.id, "identity": consumer.identity}
        return {"properties": {"encryption": {"keyVaultProperties": keys}}}

    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        """The PATCH, then reads of the registry from the write's Retry-After on until its
        provisioningState is terminal (the status link only when that does not settle it)."""
        body = self.write_body(consumer, to_key)
        result = clients.arm().write(
            "PATCH", consumer.target, self.api_version, body, shows_write=self.written_check(to_key)
        )
        return to_consumer(result) if isinstance(result, dict) else None
