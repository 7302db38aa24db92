"""Cosmos DB accounts (Microsoft.DocumentDB/databaseAccounts) with a customer-managed key in
`properties.keyVaultKeyUri`. Cosmos DB takes a versionless key URI and follows the key's new
versions by itself, so this kind is inventory only: `auto-rotating`. It is never written; an
account that shows a versioned URI is reported `manual-required` with what to set instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.model.consumer import Consumer
from rotation.model.decisions import MANUAL_REQUIRED, Check, Decision, PolicyContext
from rotation.model.ids import COSMOS_ACCOUNT, InvalidId, parse_key_id

API_VERSION = "2024-11-15"


def default_identity(resource: Mapping[str, Any]) -> tuple[str, bool]:
    """The identity the account reaches the key with (`properties.defaultIdentity`)."""
    named = str(a.properties(resource).get("defaultIdentity") or "FirstPartyIdentity")
    if named.startswith("UserAssignedIdentity="):
        # cross-tenant form: `UserAssignedIdentity=<id>&FederatedClientId=<guid>`; an ARM id has no `&`
        identity = named.removeprefix("UserAssignedIdentity=").split("&", 1)[0]
        return a.identity_fact(resource, identity)
    if named == "SystemAssignedIdentity":
        return a.identity_fact(resource, None)
    return named, True  # FirstPartyIdentity: Cosmos DB's own, granted on the vault


def versioned_uri(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    if consumer.kind != "cosmos" or consumer.version is None:
        return None
    return Decision(
        MANUAL_REQUIRED,
        "versioned-key-uri",
        f"Cosmos DB follows a versionless key URI by itself; set keyVaultKeyUri to "
        f"{consumer.key.versionless_id} (az cosmosdb update --key-uri) so it rotates with the key",
    )


class CosmosAccounts(a.ArmTargetKind):
    kind = "cosmos"
    resource_type = COSMOS_ACCOUNT
    arm_actions = (  # seen, never written
        "Microsoft.DocumentDB/databaseAccounts/read",
    )
    api_version = API_VERSION
    plan_checks: tuple[Check, ...] = (versioned_uri,)

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        resource_id = a.resource_id_of(resource, self.resource_type)
        uri = a.properties(resource).get("keyVaultKeyUri")
        if resource_id is None or not uri:
            return []
        try:
            key = parse_key_id(str(uri))
        except InvalidId:
            return []
        identity = default_identity(resource)
        return [a.consumer(self.kind, resource_id, resource, key, identity, follows=key.version is None)]
