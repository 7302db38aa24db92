"""Scenario entries for the customer-managed-key kinds (DESIGN.md section 7, docs/scenario.md):
`storageAccounts`, `diskEncryptionSets`, `sqlServers` and the kinds kept as `KeyedResource`
(`KEYED_ENTRIES`), each with `id`, `location`, `tags`, `identities`, `systemAssigned` and the
key as a full `keyId` (versionless when it holds no version; `keyIds` for a namespace)."""

from __future__ import annotations

from typing import Any

from .cmk import id_part
from .disk_encryption_sets import active_key_url
from .scenario_fields import ScenarioError, arm_id, attached_identities, load_entries, require
from .state import DiskEncryptionSet, KeyedResource, SqlServer, StorageAccount, World, stable_uuid

CMK_KINDS = ("storageAccounts", "diskEncryptionSets", "sqlServers", "managedHsms")
# Kinds kept as KeyedResource (served by emulator/cmk.py KeyedProvider): entry -> (ARM type, holds several keys).
KEYED_ENTRIES: dict[str, tuple[str, bool]] = {
    "logAnalyticsClusters": ("Microsoft.OperationalInsights/clusters", False),
    "kustoClusters": ("Microsoft.Kusto/clusters", False),
    "eventHubNamespaces": ("Microsoft.EventHub/namespaces", True),
    "serviceBusNamespaces": ("Microsoft.ServiceBus/namespaces", True),
    "cosmosAccounts": ("Microsoft.DocumentDB/databaseAccounts", False),
    "managedClusters": ("Microsoft.ContainerService/managedClusters", False),
    "appConfigurationStores": ("Microsoft.AppConfiguration/configurationStores", False),
    "hdInsightClusters": ("Microsoft.HDInsight/clusters", False),
    "synapseWorkspaces": ("Microsoft.Synapse/workspaces", False),
    "postgresFlexibleServers": ("Microsoft.DBforPostgreSQL/flexibleServers", False),
    "mysqlFlexibleServers": ("Microsoft.DBforMySQL/flexibleServers", False),
}
CMK_ENTRY_TYPES: dict[str, str] = {
    "storageAccounts": "Microsoft.Storage/storageAccounts",
    "diskEncryptionSets": "Microsoft.Compute/diskEncryptionSets",
    "sqlServers": "Microsoft.Sql/servers",
    **{entry: resource_type for entry, (resource_type, _) in KEYED_ENTRIES.items()},
}
_KEYED_OPTIONS = (
    "keyVaultNetworkAccess",
    "keyVaultResourceId",
    "requireInfrastructureEncryption",
    "infrastructureEncryption",  # AKS KMS data encryption ("Enabled")
    "workspaceKeyName",  # Synapse: the active workspace key's name
    "geoBackupKeyId",  # flexible servers: the geo-backup key and the identity it is reached with
    "geoBackupIdentity",
)


def _common(
    spec: Any, where: str, provider: str, rtype: str, world: World
) -> tuple[str, list[str], str | None]:
    resource_id = arm_id(require(spec, "id", where), provider, rtype, f"{where}.id")
    identities = attached_identities(spec, where, world)
    system = None
    if spec.get("systemAssigned"):
        system = spec.get("systemPrincipalId") or stable_uuid("system:" + resource_id)
    return resource_id, identities, system


def _identity_ref(
    spec: dict[str, Any], field: str, where: str, world: World, default: str | None = None
) -> str | None:
    value = spec.get(field, default)
    if value:
        arm_id(value, "Microsoft.ManagedIdentity", "userAssignedIdentities", f"{where}.{field}")
        world.identity(value)
    return value


def _load_storage(spec: dict[str, Any], where: str, world: World) -> StorageAccount:
    resource_id, identities, system = _common(spec, where, "Microsoft.Storage", "storageAccounts", world)
    return StorageAccount(
        id=resource_id,
        location=spec.get("location", "westeurope"),
        key_id=spec.get("keyId"),
        encryption_identity=_identity_ref(spec, "encryptionIdentity", where, world),
        identities=identities,
        tags=dict(spec.get("tags") or {}),
        system_principal=system,
    )


def _source_vault(key_id: str, resource_id: str) -> str | None:
    """The vault resource id a set names for a Key Vault key (none for Managed HSM)."""
    host = key_id.split("//", 1)[-1].split("/", 1)[0]
    if ".managedhsm." in host.lower():
        return None
    sub = id_part(resource_id, "sub")
    return f"/subscriptions/{sub}/resourceGroups/rg-security/providers/Microsoft.KeyVault/vaults/{host.split('.')[0]}"


def _load_des(spec: dict[str, Any], where: str, world: World) -> DiskEncryptionSet:
    resource_id, identities, system = _common(spec, where, "Microsoft.Compute", "diskEncryptionSets", world)
    key_id = require(spec, "keyId", where)
    return DiskEncryptionSet(
        id=resource_id,
        location=spec.get("location", "westeurope"),
        key_id=key_id,
        source_vault=spec.get("sourceVault", _source_vault(key_id, resource_id)),
        rotation_to_latest=bool(spec.get("rotationToLatestKeyVersionEnabled")),
        identities=identities,
        tags=dict(spec.get("tags") or {}),
        system_principal=system,
    )


def _load_sql(spec: dict[str, Any], where: str, world: World) -> SqlServer:
    from .sql_servers import server_key_name

    resource_id, identities, system = _common(spec, where, "Microsoft.Sql", "servers", world)
    server = SqlServer(
        id=resource_id,
        location=spec.get("location", "westeurope"),
        protector_key=None,
        auto_rotation=bool(spec.get("autoRotationEnabled")),
        primary_identity=_identity_ref(spec, "primaryIdentity", where, world),
        identities=identities,
        tags=dict(spec.get("tags") or {}),
        server_keys=dict(spec.get("serverKeys") or {}),
        system_principal=system,
    )
    if spec.get("keyId"):
        server.protector_key = server_key_name(spec["keyId"])
        server.server_keys[server.protector_key] = spec["keyId"]
    return server


def _load_keyed(
    spec: dict[str, Any], where: str, world: World, resource_type: str, several: bool
) -> KeyedResource:
    provider, rtype = resource_type.split("/")
    resource_id, identities, system = _common(spec, where, provider, rtype, world)
    if several:
        key_ids = require(spec, "keyIds", where)
        if not isinstance(key_ids, list) or not all(isinstance(k, str) and k for k in key_ids):
            raise ScenarioError(f"{where}.keyIds: a list of key ids")
    else:
        key_ids = [str(require(spec, "keyId", where))]
    # The identity named for the key: given, else the first assigned one (None: system-assigned).
    key_identity = _identity_ref(spec, "keyIdentity", where, world, identities[0] if identities else None)
    _identity_ref(spec, "geoBackupIdentity", where, world)
    return KeyedResource(
        id=resource_id,
        type=resource_type,
        location=spec.get("location", "westeurope"),
        key_ids=list(key_ids),
        identities=identities,
        tags=dict(spec.get("tags") or {}),
        key_identity=key_identity or None,
        system_principal=system,
        options={name: spec[name] for name in _KEYED_OPTIONS if name in spec},
    )


def _dump_keyed(resource: KeyedResource, several: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": resource.id,
        "location": resource.location,
        **({"keyIds": list(resource.key_ids)} if several else {"keyId": resource.key_ids[0]}),
        "keyIdentity": resource.key_identity,
        "identities": list(resource.identities),
        "tags": dict(resource.tags),
        **resource.options,
    }
    return with_system(out, resource.system_principal)


def load_cmk_kinds(scenario: dict[str, Any], staged: World) -> None:
    for entry, (resource_type, several) in KEYED_ENTRIES.items():
        for index, spec in enumerate(scenario.get(entry) or []):
            resource = _load_keyed(spec, f"{entry}[{index}]", staged, resource_type, several)
            staged.keyed[resource.id.lower()] = resource
    load_entries(scenario, "storageAccounts", _load_storage, staged, staged.storage_accounts)
    load_entries(scenario, "diskEncryptionSets", _load_des, staged, staged.disk_encryption_sets)
    load_entries(scenario, "sqlServers", _load_sql, staged, staged.sql_servers)


def with_system(out: dict[str, Any], principal: str | None) -> dict[str, Any]:
    """`out` with `systemAssigned`/`systemPrincipalId` when the resource has that identity."""
    if principal:
        out.update({"systemAssigned": True, "systemPrincipalId": principal})
    return out


def dump_cmk_kinds(world: World) -> dict[str, Any]:
    """Caller holds world.lock."""
    return {
        **{
            entry: [_dump_keyed(r, several) for r in world.keyed.values() if r.type == resource_type]
            for entry, (resource_type, several) in KEYED_ENTRIES.items()
        },
        "storageAccounts": [
            with_system(
                {
                    "id": a.id,
                    "location": a.location,
                    "keyId": a.key_id,
                    "encryptionIdentity": a.encryption_identity,
                    "identities": list(a.identities),
                    "tags": dict(a.tags),
                },
                a.system_principal,
            )
            for a in world.storage_accounts.values()
        ],
        "diskEncryptionSets": [
            with_system(
                {
                    "id": d.id,
                    "location": d.location,
                    "keyId": active_key_url(world, d),  # what ARM shows, auto-rotation included
                    "sourceVault": d.source_vault,
                    "rotationToLatestKeyVersionEnabled": d.rotation_to_latest,
                    "identities": list(d.identities),
                    "tags": dict(d.tags),
                },
                d.system_principal,
            )
            for d in world.disk_encryption_sets.values()
        ],
        "sqlServers": [
            with_system(
                {
                    "id": s.id,
                    "location": s.location,
                    "keyId": s.server_keys.get(s.protector_key) if s.protector_key else None,
                    "autoRotationEnabled": s.auto_rotation,
                    "primaryIdentity": s.primary_identity,
                    "serverKeys": dict(s.server_keys),
                    "identities": list(s.identities),
                    "tags": dict(s.tags),
                },
                s.system_principal,
            )
            for s in world.sql_servers.values()
        ],
    }
