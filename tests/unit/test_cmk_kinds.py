"""The Storage, Disk Encryption Set and SQL kinds: reading real-shaped ARM bodies (shapes of the
services' REST API examples), minimal write bodies, server key names and key-type checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rotation.azure.kinds import disk_encryption_set, sql, storage
from rotation.azure.kinds.registry import to_consumer as registry_to_consumer
from rotation.model.decisions import PolicyContext
from rotation.model.ids import InvalidId, parse_key_id
from rotation.model.keystate import KeyState, VersionInfo
from rotation.run.policy import decide

SUB = "00000000-0000-0000-0000-00000000000a"
UAI = f"/subscriptions/{SUB}/resourceGroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uai-1"
V1, V2 = "0" * 31 + "1", "0" * 31 + "2"


def storage_body(**encryption: Any) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stdata",
        "name": "stdata",
        "type": "Microsoft.Storage/storageAccounts",
        "location": "eastus",
        "kind": "StorageV2",
        "identity": {
            "type": "UserAssigned",
            "userAssignedIdentities": {UAI: {"principalId": "p", "clientId": "c"}},
        },
        "properties": {
            "provisioningState": "Succeeded",
            "encryption": {
                "services": {"blob": {"enabled": True, "keyType": "Account"}},
                "keySource": "Microsoft.Keyvault",
                "keyvaultproperties": {
                    "keyvaulturi": "https://myvault.vault.azure.net/",
                    "keyname": "wrappingKey",
                    "keyversion": V1,
                    "currentVersionedKeyIdentifier": f"https://myvault.vault.azure.net/keys/wrappingKey/{V1}",
                },
                "identity": {"userAssignedIdentity": UAI},
                **encryption,
            },
        },
    }


class TestStorage:
    def test_pinned_account_reads_its_key_and_identity(self) -> None:
        consumer = storage.to_consumer(storage_body())
        assert consumer is not None and consumer.kind == "storage"
        assert consumer.key == parse_key_id(f"https://myvault.vault.azure.net/keys/wrappingKey/{V1}")
        assert consumer.identity == UAI and consumer.identity_assigned and not consumer.follows_new_versions

    def test_empty_keyversion_follows_new_versions(self) -> None:
        body = storage_body()
        body["properties"]["encryption"]["keyvaultproperties"]["keyversion"] = ""
        consumer = storage.to_consumer(body)
        assert consumer is not None and consumer.follows_new_versions and consumer.version is None

    def test_microsoft_managed_keys_are_not_a_consumer(self) -> None:
        assert storage.to_consumer(storage_body(keySource="Microsoft.Storage")) is None

    def test_identity_not_on_the_account_is_reported(self) -> None:
        body = storage_body()
        body["identity"] = {"type": "SystemAssigned", "principalId": "p"}
        consumer = storage.to_consumer(body)
        assert consumer is not None and not consumer.identity_assigned

    def test_write_body_is_the_encryption_block_with_the_identity_unchanged(self) -> None:
        consumer = storage.to_consumer(storage_body())
        assert consumer is not None
        body = storage.write_body(
            consumer, parse_key_id(f"https://myvault.vault.azure.net/keys/wrappingKey/{V2}")
        )
        assert body == {
            "properties": {
                "encryption": {
                    "keySource": "Microsoft.Keyvault",
                    "keyvaultproperties": {
                        "keyvaulturi": "https://myvault.vault.azure.net",
                        "keyname": "wrappingKey",
                        "keyversion": V2,
                    },
                    "identity": {"userAssignedIdentity": UAI},
                }
            }
        }


def des_body(key_url: str, **properties: Any) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/myDES",
        "name": "myDES",
        "location": "westus",
        "identity": {"type": "SystemAssigned", "principalId": "p", "tenantId": "t"},
        "properties": {
            "activeKey": {
                "sourceVault": {
                    "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/myvmvault"
                },
                "keyUrl": key_url,
            },
            "encryptionType": "EncryptionAtRestWithCustomerKey",
            "previousKeys": [],
            "provisioningState": "Succeeded",
            **properties,
        },
    }


class TestDiskEncryptionSet:
    def test_pinned_set(self) -> None:
        consumer = disk_encryption_set.to_consumer(des_body(f"https://myvmvault.vault.azure.net/keys/k/{V1}"))
        assert consumer is not None and consumer.version == V1
        assert consumer.identity_assigned and not consumer.follows_new_versions

    def test_rotation_to_latest_is_auto_rotating(self) -> None:
        body = des_body(
            f"https://myvmvault.vault.azure.net/keys/k/{V1}", rotationToLatestKeyVersionEnabled=True
        )
        consumer = disk_encryption_set.to_consumer(body)
        assert consumer is not None and consumer.follows_new_versions

    def test_a_set_without_identity_cannot_reach_its_key(self) -> None:
        body = des_body(f"https://myvmvault.vault.azure.net/keys/k/{V1}")
        body["identity"] = {"type": "None"}
        consumer = disk_encryption_set.to_consumer(body)
        assert consumer is not None and not consumer.identity_assigned

    def test_write_body_keeps_the_source_vault_for_a_vault_key_and_drops_it_for_hsm(self) -> None:
        consumer = disk_encryption_set.to_consumer(des_body(f"https://myvmvault.vault.azure.net/keys/k/{V1}"))
        assert consumer is not None
        to_vault = disk_encryption_set.write_body(
            consumer, parse_key_id(f"https://myvmvault.vault.azure.net/keys/k/{V2}")
        )
        assert to_vault["properties"]["activeKey"]["sourceVault"] == {"id": consumer.extra["sourceVault"]}
        hsm = parse_key_id(f"https://myhsm.managedhsm.azure.net/keys/k/{V2}")
        assert disk_encryption_set.write_body(consumer, hsm) == {
            "properties": {"activeKey": {"keyUrl": hsm.id}}
        }


def sql_server_body(**properties: Any) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Sql/servers/sqlcrudtest",
        "name": "sqlcrudtest",
        "type": "Microsoft.Sql/servers",
        "location": "japaneast",
        "kind": "v12.0",
        "identity": {
            "type": "UserAssigned",
            "userAssignedIdentities": {UAI: {"principalId": "p", "clientId": "c"}},
        },
        "properties": {
            "state": "Ready",
            "version": "12.0",
            "primaryUserAssignedIdentityId": UAI,
            **properties,
        },
    }


def protector(uri: str | None, *, auto: bool = False) -> dict[str, Any]:
    properties: dict[str, Any] = {"serverKeyName": "ServiceManaged", "serverKeyType": "ServiceManaged"}
    if uri:
        properties = {
            "serverKeyName": "someVault_someKey_" + uri.rsplit("/", 1)[1],
            "serverKeyType": "AzureKeyVault",
            "uri": uri,
            "thumbprint": "00112233445566778899aabbccddeeff00112233",
            "autoRotationEnabled": auto,
        }
    return {"name": "current", "type": "Microsoft.Sql/servers/encryptionProtector", "properties": properties}


class TestSql:
    def test_protector_names_the_key(self) -> None:
        uri = f"https://somevault.vault.azure.net/keys/someKey/{V1}"
        consumer = sql.to_consumer(sql_server_body(), protector(uri))
        assert consumer is not None and consumer.key == parse_key_id(uri) and consumer.identity_assigned
        assert not consumer.follows_new_versions and consumer.extra["autoRotationEnabled"] is False

    def test_auto_rotation_and_service_managed(self) -> None:
        uri = f"https://somevault.vault.azure.net/keys/someKey/{V1}"
        consumer = sql.to_consumer(sql_server_body(), protector(uri, auto=True))
        assert consumer is not None and consumer.follows_new_versions
        assert sql.to_consumer(sql_server_body(), protector(None)) is None

    def test_primary_identity_not_assigned(self) -> None:
        body = sql_server_body()
        body["identity"] = {"type": "SystemAssigned", "principalId": "p"}
        consumer = sql.to_consumer(body, protector(f"https://v1.vault.azure.net/keys/k/{V1}"))
        assert consumer is not None and not consumer.identity_assigned and consumer.identity == UAI

    def test_server_key_names(self) -> None:
        assert sql.server_key_name(parse_key_id(f"https://contoso.vault.azure.net/keys/tde/{V2}")) == (
            f"contoso_tde_{V2}"
        )
        assert sql.server_key_name(parse_key_id(f"https://pool1.managedhsm.azure.net/keys/tde/{V2}")) == (
            f"pool1_tde_{V2}"
        )
        with pytest.raises(InvalidId):
            sql.server_key_name(parse_key_id("https://contoso.vault.azure.net/keys/tde"))


def context(key_type: str, size: int | None) -> PolicyContext:
    now = datetime.now(UTC)
    old = VersionInfo(V1, True, datetime(2026, 1, 1, tzinfo=UTC), None, None)
    new = VersionInfo(V2, True, now, None, None, key_type, ("wrapKey", "unwrapKey"), size)
    key = parse_key_id("https://contoso.vault.azure.net/keys/k")
    return PolicyContext(KeyState(key, (old, new), V2, new, None, "Recoverable"), now)


@pytest.mark.parametrize(
    ("kind", "key_type", "size", "blocked"),
    [
        (sql.SqlServers(), "RSA", 4096, True),
        (sql.SqlServers(), "RSA-HSM", 3072, False),
        (storage.StorageAccounts(), "RSA", 4096, False),
        (storage.StorageAccounts(), "RSA", 1024, True),
        (disk_encryption_set.DiskEncryptionSets(), "RSA-HSM", 2048, False),
        (disk_encryption_set.DiskEncryptionSets(), "oct-HSM", None, True),
    ],
)
def test_key_types_each_service_accepts(kind: Any, key_type: str, size: int | None, blocked: bool) -> None:
    uri = f"https://contoso.vault.azure.net/keys/k/{V1}"
    consumer = {
        "sqlserver": lambda: sql.to_consumer(sql_server_body(), protector(uri)),
        "storage": lambda: storage.to_consumer(storage_body()),
        "diskencryptionset": lambda: disk_encryption_set.to_consumer(des_body(uri)),
    }[kind.kind]()
    assert consumer is not None
    decision = decide(consumer, context(key_type, size), kind.plan_checks)
    assert (decision.action, decision.reason) == (
        ("blocked", "key-type-unsupported") if blocked else ("update", "behind-desired")
    )


def test_every_generic_arm_kind_shares_one_base_and_one_hint_rule() -> None:
    """The eight kinds over generic ARM calls read, write and explain errors the same way: a
    service error code is explained at any status, the catch-all ("") only for a 400."""
    from rotation.azure.kinds import all_kinds
    from rotation.azure.kinds.armkind import ArmTargetKind
    from rotation.model.errors import ErrorInfo

    arm_kinds = {k.kind for k in all_kinds() if isinstance(k, ArmTargetKind)}
    assert arm_kinds >= {
        "storage",
        "diskencryptionset",
        "sqlserver",
        "loganalytics",
        "kusto",
        "cosmos",
        "aks",
    }

    def hint_for(kind: ArmTargetKind, status: int, code: str | None) -> str | None:
        info = ErrorInfo(False, False, status, code, "refused")
        return next((h.text for h in kind.hints if h.matches(info)), None)

    server = sql.SqlServers()
    assert "grant it" in (hint_for(server, 403, "AzureKeyVaultMissingPermissions") or "")
    assert "see https://" in (hint_for(server, 400, "SomethingElse") or "")
    assert hint_for(server, 409, "SomethingElse") is None
    assert hint_for(storage.StorageAccounts(), 400, None) is not None


@pytest.mark.parametrize(
    ("named", "identity", "assigned"),
    [
        ("system", {"type": "SystemAssigned", "principalId": "5e4d3c2b-0000-4000-8000-000000000001"}, True),
        (
            "SYSTEM",
            {"type": "SystemAssigned, UserAssigned", "principalId": "5e4d3c2b-0000-4000-8000-000000000001"},
            True,
        ),
        (
            "5e4d3c2b-0000-4000-8000-000000000001",
            {"type": "SystemAssigned", "principalId": "5e4d3c2b-0000-4000-8000-000000000001"},
            True,
        ),
        ("system", {"type": "UserAssigned", "userAssignedIdentities": {}}, False),
        (
            "eb3a943d-6b12-48a6-b585-ac2316e15ab2",
            {
                "type": "UserAssigned",
                "userAssignedIdentities": {"/x/uai": {"clientId": "EB3A943D-6B12-48A6-B585-AC2316E15AB2"}},
            },
            True,
        ),
        (
            "eb3a943d-6b12-48a6-b585-ac2316e15ab2",
            {"type": "SystemAssigned", "principalId": "5e4d3c2b-0000-4000-8000-000000000001"},
            False,
        ),
    ],
)
def test_every_form_of_a_registry_encryption_identity(
    named: str, identity: dict[str, Any], assigned: bool
) -> None:
    body = {
        "id": "/subscriptions/5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d/resourceGroups/rg/providers/"
        "Microsoft.ContainerRegistry/registries/r1",
        "location": "westeurope",
        "identity": identity,
        "properties": {
            "encryption": {
                "status": "enabled",
                "keyVaultProperties": {
                    "keyIdentifier": "https://contoso-cmk.vault.azure.net/keys/acr-cmk/654f76c4e63845cbb50fd6f751540429",
                    "identity": named,
                },
            }
        },
    }
    consumer = registry_to_consumer(body)
    assert consumer is not None and consumer.identity_assigned is assigned
