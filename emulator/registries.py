"""Microsoft.ContainerRegistry/registries (api-version 2025-11-01 shapes).

PATCH is a long-running operation (201 + Azure-AsyncOperation + Retry-After). It accepts the
minimal body the product sends and the full-resource body `az acr encryption rotate-key`
sends (read-only properties are ignored). A key or identity the registry could not use is
refused as ACR refuses it, so a test can prove a registry was never broken.
"""

from __future__ import annotations

import copy
from typing import Any

from .arm import arm_error, identity_block, iso, key_problem, latest_version_url
from .cmk import ArmResourceRoutes
from .http import Request, Response
from .state import Registry, arm_parts, now

NAMESPACE = "Microsoft.ContainerRegistry"
TYPE = "Microsoft.ContainerRegistry/registries"
_READ_ONLY = {
    "loginServer",
    "creationDate",
    "provisioningState",
    "status",
    "encryption",
    "dataEndpointHostNames",
    "privateEndpointConnections",
}
_WRITABLE = {
    "adminUserEnabled",
    "networkRuleSet",
    "policies",
    "dataEndpointEnabled",
    "publicNetworkAccess",
    "networkRuleBypassOptions",
    "networkRuleBypassAllowedForTasks",
    "anonymousPullEnabled",
    "roleAssignmentMode",
    "zoneRedundancy",
}


class Registries(ArmResourceRoutes[Registry]):
    TYPE = TYPE
    WRITABLE = True  # a long-running PATCH
    BUSY_CODE = "AnotherOperationInProgress"

    def resources(self) -> dict[str, Registry]:
        return self.world.registries

    def render(self, registry: Registry) -> dict[str, Any]:
        name = arm_parts(registry.id)["name"]
        properties: dict[str, Any] = {
            "loginServer": f"{name.lower()}.azurecr.io",
            "creationDate": iso(registry.created),
            "provisioningState": registry.provisioning_state,
            "adminUserEnabled": False,
            "policies": {
                "quarantinePolicy": {"status": "disabled"},
                "trustPolicy": {"type": "Notary", "status": "disabled"},
                "retentionPolicy": {"days": 7, "status": "disabled"},
                "exportPolicy": {"status": "enabled"},
            },
            "dataEndpointEnabled": False,
            "publicNetworkAccess": "Enabled",
            "networkRuleBypassOptions": "AzureServices",
            "zoneRedundancy": "Disabled",
            "anonymousPullEnabled": False,
        }
        properties.update(copy.deepcopy(registry.properties))
        properties["encryption"] = self._encryption(registry)
        body: dict[str, Any] = {
            "id": registry.id,
            "name": name,
            "type": TYPE,
            "location": registry.location,
            "tags": dict(registry.tags),
            "sku": {"name": "Premium", "tier": "Premium"},
            "properties": properties,
        }
        identity = identity_block(self.world, registry.identities, registry.system_principal)
        if identity:
            body["identity"] = identity
        return body

    def _encryption(self, registry: Registry) -> dict[str, Any]:
        if not registry.key_id:
            return {"status": "disabled"}
        versionless = latest_version_url(self.world, registry.key_id) != registry.key_id.rstrip("/")
        properties: dict[str, Any] = {
            "keyIdentifier": registry.key_id,
            # A versionless id is followed by the service itself; show the version it uses today.
            "versionedKeyIdentifier": latest_version_url(self.world, registry.key_id) or registry.key_id,
            "identity": self._identity_value(registry, registry.encryption_identity),
            "keyRotationEnabled": versionless,
        }
        if registry.last_key_rotation:
            properties["lastKeyRotationTimestamp"] = iso(registry.last_key_rotation)
        return {"status": "enabled", "keyVaultProperties": properties}

    def _identity_value(self, registry: Registry, identity: str | None) -> str | None:
        """ACR names the encryption identity by client id (user-assigned) or its reserved word
        `system` (the system-assigned identity, as `az acr encryption rotate-key` writes it)."""
        if identity == "SystemAssigned":
            return "system"
        if identity:
            return self.world.identity(identity).client_id
        return None

    def _identity_names(self, registry: Registry, identity: str | None) -> tuple[str, ...]:
        """The names a vault knows the encryption identity by (resource id, principal id)."""
        if identity == "SystemAssigned":
            return (registry.system_principal or "",)
        if identity:
            return (identity, self.world.identity(identity).principal_id)
        return ()

    def _identity_for(self, registry: Registry, value: str) -> str | None:
        """Map the `identity` of a PATCH (a client id, `system`, or the system principal id) back to
        an assigned identity."""
        if registry.system_principal and value.lower() in ("system", registry.system_principal.lower()):
            return "SystemAssigned"
        for identity_id in registry.identities:
            if self.world.identity(identity_id).client_id.lower() == value.lower():
                return identity_id
        return None

    def _encryption_asked(
        self, registry: Registry, name: str, vault_properties: dict[str, Any] | None
    ) -> tuple[str | None, str | None] | Response:
        """(key id, encryption identity) the PATCH leaves the registry with, or ARM's refusal
        (no CMK at creation, an identity it lacks, a key it cannot use). Caller holds world.lock."""
        new_key, new_identity = registry.key_id, registry.encryption_identity
        if not vault_properties:
            return new_key, new_identity
        if not registry.key_id:
            return arm_error(
                400,
                "CMKNotSupportedAfterCreation",
                "Encryption with a customer-managed key can only be enabled when the registry is created.",
            )
        new_key = vault_properties.get("keyIdentifier") or registry.key_id
        if vault_properties.get("identity"):
            new_identity = self._identity_for(registry, vault_properties["identity"])
            if new_identity is None:
                return arm_error(
                    400,
                    "InvalidIdentity",
                    f"The registry '{name}' does not have access to identity "
                    f"'{vault_properties['identity']}'. Assign the identity to the registry "
                    "first. For more information on bring your own key, please visit "
                    "'https://aka.ms/acr/cmk'.",
                )
        problem = key_problem(self.world, new_key, identities=self._identity_names(registry, new_identity))
        if problem:
            return arm_error(
                400,
                "KeyVaultAccessFailed",
                f"Failed to access KeyId '{new_key}'. Verify that identity "
                f"'{self._identity_value(registry, new_identity)}' has 'Get, Wrap Key, "
                f"Unwrap Key' permission on key '{new_key}'. {problem} For more information "
                "on bring your own key, please visit 'https://aka.ms/acr/cmk'.",
            )
        return new_key, new_identity

    def write(self, request: Request, registry: Registry, body: dict[str, Any], name: str) -> Response:
        properties = body.get("properties") or {}
        vault_properties = (properties.get("encryption") or {}).get("keyVaultProperties")
        chosen = self._encryption_asked(registry, name, vault_properties)
        if isinstance(chosen, Response):
            return chosen
        new_key, new_identity = chosen
        writable = {k: copy.deepcopy(v) for k, v in properties.items() if k in _WRITABLE}
        tags = body.get("tags")
        previous_state = registry.provisioning_state
        registry.provisioning_state = "Updating"

        def apply() -> None:
            if new_key != registry.key_id:
                registry.last_key_rotation = now()
            registry.key_id, registry.encryption_identity = new_key, new_identity
            registry.properties.update(writable)
            if tags is not None:
                registry.tags = dict(tags)
            registry.provisioning_state = "Succeeded"

        def revert() -> None:
            registry.provisioning_state = previous_state

        return self.arm.answer_write(
            request,
            registry.id,
            NAMESPACE,
            registry.location,
            apply,
            revert,
            shape="async201",
            body=lambda: self.render(registry),
        )
