"""Build emulator scenarios (DESIGN.md section 7 format) in tests, with real-shaped ids."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"
VAULT = "contoso-cmk"
VAULT_HOST = f"{VAULT}.vault.azure.net"
OTHER_VAULT = "fabrikam-cmk"
HSM = "contoso-hsm"
HSM_HOST = f"{HSM}.managedhsm.azure.net"


def vid(tag: str) -> str:
    """A deterministic 32-hex key version for a readable tag."""
    return hashlib.md5(tag.encode()).hexdigest()  # noqa: S324 - an id, not security


def key_id(name: str, version: str | None = None, vault: str = VAULT) -> str:
    base = f"https://{vault}.vault.azure.net/keys/{name}"
    return f"{base}/{version}" if version else base


def identity_id(name: str, sub: str = SUB_A) -> str:
    return f"/subscriptions/{sub}/resourceGroups/rg-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"


def version(
    tag: str,
    *,
    created: str = "-100d",
    exp: str | None = "+265d",
    nbf: str | None = None,
    enabled: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    return {"version": vid(tag), "created": created, "exp": exp, "nbf": nbf, "enabled": enabled, **extra}


def key(
    *versions: dict[str, Any],
    kty: str = "RSA",
    ops: list[str] | None = None,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"kty": kty, "versions": list(versions), "rotationPolicy": policy}
    if ops is not None:
        spec["keyOps"] = ops
    return spec


def data_key(**options: Any) -> dict[str, Any]:
    """A key with an old (300 days) and a new (1 hour) version: the CMK kinds' tests use it."""
    return key(version("old", created="-300d"), version("new", created="-1h"), **options)


def registry_id(name: str, sub: str = SUB_A, rg: str = "rg-acr") -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}"


def batch_id(name: str, sub: str = SUB_A, rg: str = "rg-batch") -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Batch/batchAccounts/{name}"


def group_id(name: str, sub: str = SUB_A, rg: str = "rg-aci") -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerInstance/containerGroups/{name}"


def hsm_key_id(name: str, version: str | None = None) -> str:
    base = f"https://{HSM_HOST}/keys/{name}"
    return f"{base}/{version}" if version else base


def storage_id(name: str, sub: str = SUB_A, rg: str = "rg-data") -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}"


def des_id(name: str, sub: str = SUB_A, rg: str = "rg-disks") -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/diskEncryptionSets/{name}"


def sql_id(name: str, sub: str = SUB_A, rg: str = "rg-sql") -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/servers/{name}"


def storage(
    name: str,
    key: str | None,
    *,
    sub: str = SUB_A,
    identity: str | None = None,
    identities: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A storage account encrypting with `key` through a user-assigned identity it holds."""
    identity = identity or identity_id("uai-storage")
    return {
        "id": storage_id(name, sub),
        "location": "westeurope",
        "keyId": key,
        "encryptionIdentity": identity,
        "identities": identities if identities is not None else [identity],
        "tags": tags or {},
    }


def encryption_set(
    name: str,
    key: str,
    *,
    sub: str = SUB_A,
    auto: bool = False,
    system_assigned: bool = True,
    identities: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Disk Encryption Set on `key`, with a system-assigned identity unless told otherwise."""
    return {
        "id": des_id(name, sub),
        "location": "westeurope",
        "keyId": key,
        "rotationToLatestKeyVersionEnabled": auto,
        "systemAssigned": system_assigned,
        "identities": identities or [],
        "tags": tags or {},
    }


def sql_server(
    name: str,
    key: str,
    *,
    sub: str = SUB_A,
    auto: bool = False,
    primary: str | None = None,
    identities: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A SQL server whose TDE protector is `key`, reached with its primary user-assigned identity."""
    primary = primary or identity_id("uai-sql")
    return {
        "id": sql_id(name, sub),
        "location": "westeurope",
        "keyId": key,
        "autoRotationEnabled": auto,
        "primaryIdentity": primary,
        "identities": identities if identities is not None else [primary],
        "tags": tags or {},
    }


def registry(
    name: str,
    key: str | None,
    *,
    sub: str = SUB_A,
    rg: str = "rg-acr",
    identity: str | None = None,
    identities: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    identity = identity or identity_id("uai-acr")
    return {
        "id": registry_id(name, sub, rg),
        "location": "westeurope",
        "keyId": key,
        "encryptionIdentity": identity if key else None,
        "identities": identities if identities is not None else [identity],
        "tags": tags or {},
    }


def batch(
    name: str,
    key: str | None,
    *,
    sub: str = SUB_A,
    rg: str = "rg-batch",
    identities: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": batch_id(name, sub, rg),
        "location": "westeurope",
        "keyId": key,
        "identities": identities if identities is not None else [identity_id("uai-batch")],
        "tags": tags or {},
    }


def group(
    name: str,
    key_name: str,
    key_version: str,
    *,
    sub: str = SUB_A,
    rg: str = "rg-aci",
    identity: str | None = None,
    secure: bool = False,
    tags: dict[str, str] | None = None,
    vault: str = VAULT,
) -> dict[str, Any]:
    return {
        "id": group_id(name, sub, rg),
        "location": "westeurope",
        "vaultBaseUrl": f"https://{vault}.vault.azure.net",
        "keyName": key_name,
        "keyVersion": key_version,
        "identity": identity or identity_id("uai-aci"),
        "secureEnvironment": secure,
        "tags": tags or {},
    }


def scenario(
    keys: dict[str, dict[str, Any]],
    *,
    registries: Sequence[dict[str, Any]] = (),
    batch_accounts: Sequence[dict[str, Any]] = (),
    groups: Sequence[dict[str, Any]] = (),
    other_vault_keys: dict[str, dict[str, Any]] | None = None,
    recovery_level: str = "Recoverable",
    storage_accounts: Sequence[dict[str, Any]] = (),
    encryption_sets: Sequence[dict[str, Any]] = (),
    sql_servers: Sequence[dict[str, Any]] = (),
    hsm_keys: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    vaults: dict[str, Any] = {VAULT: {"recoveryLevel": recovery_level, "keys": keys}}
    if other_vault_keys is not None:
        vaults[OTHER_VAULT] = {"keys": other_vault_keys}
    built: dict[str, Any] = {
        "vaults": vaults,
        "registries": list(registries),
        "batchAccounts": list(batch_accounts),
        "containerGroups": list(groups),
    }
    if storage_accounts:
        built["storageAccounts"] = list(storage_accounts)
    if encryption_sets:
        built["diskEncryptionSets"] = list(encryption_sets)
    if sql_servers:
        built["sqlServers"] = list(sql_servers)
    if hsm_keys is not None:
        built["managedHsms"] = {HSM: {"recoveryLevel": "CustomizedRecoverable+Purgeable", "keys": hsm_keys}}
    return built


def event_grid_event(
    event_type: str, key_name: str, key_version: str, *, event_id: str = "evt-1", vault: str = VAULT
) -> dict[str, Any]:
    """An Event Grid schema Key Vault event, shaped like the shared samples."""
    return {
        "id": event_id,
        "topic": f"/subscriptions/{SUB_A}/resourceGroups/rg-security/providers/Microsoft.KeyVault/vaults/{vault}",
        "subject": key_name,
        "eventType": f"Microsoft.KeyVault.{event_type}",
        "eventTime": "2026-11-20T09:15:02.4410000Z",
        "data": {
            "Id": key_id(key_name, key_version, vault),
            "VaultName": vault,
            "ObjectType": "Key",
            "ObjectName": key_name,
            "Version": key_version,
            "NBF": "1795165200",
            "EXP": "1826701200",
        },
        "dataVersion": "1",
        "metadataVersion": "1",
    }


# -- Log Analytics / Data Explorer clusters, Event Hubs / Service Bus namespaces, Cosmos DB, AKS --
KEYED_TYPES = {
    "logAnalyticsClusters": ("rg-logs", "Microsoft.OperationalInsights/clusters"),
    "kustoClusters": ("rg-adx", "Microsoft.Kusto/clusters"),
    "eventHubNamespaces": ("rg-eh", "Microsoft.EventHub/namespaces"),
    "serviceBusNamespaces": ("rg-sb", "Microsoft.ServiceBus/namespaces"),
    "cosmosAccounts": ("rg-cosmos", "Microsoft.DocumentDB/databaseAccounts"),
    "managedClusters": ("rg-aks", "Microsoft.ContainerService/managedClusters"),
    "appConfigurationStores": ("rg-appcs", "Microsoft.AppConfiguration/configurationStores"),
    "hdInsightClusters": ("rg-hdi", "Microsoft.HDInsight/clusters"),
    "synapseWorkspaces": ("rg-synapse", "Microsoft.Synapse/workspaces"),
    "postgresFlexibleServers": ("rg-pg", "Microsoft.DBforPostgreSQL/flexibleServers"),
    "mysqlFlexibleServers": ("rg-mysql", "Microsoft.DBforMySQL/flexibleServers"),
}
NAMESPACE_ENTRIES = ("eventHubNamespaces", "serviceBusNamespaces")


def keyed_id(entry: str, name: str, sub: str = SUB_A) -> str:
    rg, rtype = KEYED_TYPES[entry]
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{rtype}/{name}"


def keyed(
    entry: str,
    name: str,
    *keys: str,
    sub: str = SUB_A,
    identities: list[str] | None = None,
    key_identity: str | None = None,
    tags: dict[str, str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One scenario entry of `entry` (a KEYED_TYPES name) holding `keys` (several: namespaces)."""
    uai = identity_id(f"uai-{entry.lower()[:10]}")
    spec: dict[str, Any] = {
        "id": keyed_id(entry, name, sub),
        "location": "westeurope",
        "identities": identities if identities is not None else [uai],
        "tags": tags or {},
        **options,
    }
    if key_identity is not None:
        spec["keyIdentity"] = key_identity
    if entry in NAMESPACE_ENTRIES:
        spec["keyIds"] = list(keys)
    else:
        [spec["keyId"]] = keys
    return spec


def with_keyed(base: dict[str, Any], *entries: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """The scenario with these (entry name, spec) pairs added."""
    for entry, spec in entries:
        base.setdefault(entry, []).append(spec)
    return base


# -- Data Factory factories and Databricks workspaces (written by a PUT of the whole resource) --
DOCUMENT_TYPES = {
    "dataFactories": ("rg-adf", "Microsoft.DataFactory/factories"),
    "databricksWorkspaces": ("rg-dbx", "Microsoft.Databricks/workspaces"),
}


def document_id(entry: str, name: str, sub: str = SUB_A) -> str:
    """The id of a `dataFactories` or `databricksWorkspaces` entry named `name`."""
    rg, rtype = DOCUMENT_TYPES[entry]
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{rtype}/{name}"


def factory(
    name: str,
    key: str | None,
    *,
    key_identity: str | None = None,
    identities: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A `dataFactories` entry: its key as a key id, read with `key_identity` (None: system-assigned)."""
    spec: dict[str, Any] = {
        "id": document_id("dataFactories", name),
        "location": "westeurope",
        "keyId": key,
        "identities": identities if identities is not None else ([key_identity] if key_identity else []),
        **fields,
    }
    if key_identity:
        spec["keyIdentity"] = key_identity
    else:
        spec.setdefault("systemAssigned", True)
    return spec


def workspace(
    name: str,
    *,
    managed_services: str | None = None,
    managed_disk: str | None = None,
    disk_auto_rotation: bool = False,
    dbfs: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A `databricksWorkspaces` entry with a key in any of its three entities."""
    return {
        "id": document_id("databricksWorkspaces", name),
        "location": "westeurope",
        "managedServicesKeyId": managed_services,
        "managedDiskKeyId": managed_disk,
        "managedDiskAutoRotation": disk_auto_rotation,
        "dbfsKeyId": dbfs,
        **fields,
    }
