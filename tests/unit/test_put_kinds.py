"""Data Factory (2018-06-01) and Databricks (2026-01-01) kinds on bodies shaped like their REST
specs' examples (Factories_Get; WorkspaceGet, EnableEncryption, WorkspaceManagedDiskEncryption*):
the mapping to Consumers, the PUT body (the resource as read, the key moved, read-only fields
left out, every other field kept), verification, key types, and the 24-hour grace period of
Databricks managed services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.azure.kinds.databricks import DatabricksWorkspaces
from rotation.azure.kinds.datafactory import DataFactories
from rotation.azure.kinds.protocol import ApplyContext
from rotation.model.decisions import PolicyContext
from rotation.model.errors import ErrorInfo, TransientCondition
from rotation.model.ids import KeyRef, parse_key_id
from rotation.model.keystate import KeyState, VersionInfo
from rotation.run.policy import decide

SUB = "12345678-1234-1234-1234-12345678abcd"
UAI = f"/subscriptions/{SUB}/resourceGroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/adf-cmk"
V1, V2 = "654f76c4e63845cbb50fd6f751540429", "9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b"
VAULT = "https://contoso-cmk.vault.azure.net/"
KEY = parse_key_id(f"{VAULT}keys/cmk")
TO = KEY.with_version(V2)


def factory(version: str | None = V1, identity: str | None = UAI, assigned: bool = True) -> dict[str, Any]:
    encryption: dict[str, Any] = {"vaultBaseUrl": VAULT, "keyName": "cmk"}
    if version:
        encryption["keyVersion"] = version
    if identity:
        encryption["identity"] = {"userAssignedIdentity": identity}
    return {
        "name": "exampleFactoryName",
        "id": f"/subscriptions/{SUB}/resourceGroups/exampleResourceGroup/providers/Microsoft.DataFactory/factories/exampleFactoryName",
        "type": "Microsoft.DataFactory/factories",
        "identity": {
            "type": "SystemAssigned,UserAssigned",
            "principalId": "b31776d4-ee80-4860-9433-ec0101be1891",
            "tenantId": "72f999bf-acf1-41af-91ab-2d7cd011db47",
            "userAssignedIdentities": {UAI: {"principalId": "p", "clientId": "c"}} if assigned else {},
        },
        "properties": {
            "provisioningState": "Succeeded",
            "createTime": "2018-06-19T05:41:50.0041314Z",
            "version": "2018-06-01",
            "repoConfiguration": {
                "type": "FactoryVSTSConfiguration",
                "projectName": "project",
                "accountName": "ADF",
            },
            "encryption": encryption,
        },
        "eTag": '"00004004-0000-0000-0000-5b28979e0000"',
        "systemData": {"createdBy": "someone@contoso.com", "createdByType": "User"},
        "location": "East US",
        "tags": {"exampleTag": "exampleValue"},
    }


def kvp(version: str, key: str = "cmk") -> dict[str, str]:
    return {"keyName": key, "keyVaultUri": VAULT, "keyVersion": version}


def workspace(
    services: dict[str, str] | None = None,
    disk: dict[str, str] | None = None,
    auto: bool = False,
    dbfs: str | None = None,
) -> dict[str, Any]:
    entities: dict[str, Any] = {}
    if services:
        entities["managedServices"] = {"keySource": "Microsoft.Keyvault", "keyVaultProperties": services}
    if disk:
        entities["managedDisk"] = {
            "keySource": "Microsoft.Keyvault",
            "keyVaultProperties": disk,
            "rotationToLatestKeyVersionEnabled": auto,
        }
    properties: dict[str, Any] = {
        "authorizations": [{"principalId": "00000000-0000-0000-0000-000000000000", "roleDefinitionId": "r"}],
        "computeMode": "Hybrid",
        "createdBy": {"applicationId": "a", "oid": "o", "puid": "3"},
        "createdDateTime": "2020-02-20T00:10:29.2858439Z",
        "encryption": {"entities": entities},
        "managedDiskIdentity": {
            "type": "SystemAssigned",
            "principalId": "22222222-2222-2222-2222-222222222222",
        },
        "managedResourceGroupId": f"/subscriptions/{SUB}/resourceGroups/myManagedRG",
        "parameters": {"customVirtualNetworkId": {"type": "String", "value": "/subscriptions/x/vnet"}},
        "provisioningState": "Succeeded",
        "workspaceId": "6666666666666666",
        "workspaceUrl": "adb-6666666666666666.19.azuredatabricks.net",
    }
    if dbfs:
        value = {
            "KeyName": "cmk",
            "keySource": "Microsoft.Keyvault",
            "keyvaulturi": VAULT,
            "keyversion": dbfs,
        }
        properties["parameters"]["encryption"] = {"type": "Object", "value": value}
        properties["storageAccountIdentity"] = {
            "type": "SystemAssigned",
            "principalId": "55555555-5555-5555-5555-555555555555",
        }
    return {
        "type": "Microsoft.Databricks/workspaces",
        "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/myWorkspace",
        "name": "myWorkspace",
        "location": "East US 2",
        "properties": properties,
        "sku": {"name": "premium"},
        "tags": {"mytag1": "myvalue1"},
    }


def context(key_type: str = "RSA", size: int | None = 2048, now: datetime | None = None) -> PolicyContext:
    now = now or datetime.now(UTC)
    old = VersionInfo(V1, True, datetime(2026, 1, 1, tzinfo=UTC), None, None)
    new = VersionInfo(V2, True, now, None, None, key_type, ("wrapKey", "unwrapKey"), size)
    return PolicyContext(KeyState(KEY, (old, new), V2, new, None, "Recoverable"), now)


class TestDataFactory:
    kind = DataFactories()

    def test_mapping_identity_and_versionless(self) -> None:
        [consumer] = self.kind.to_consumers(factory())
        assert (consumer.kind, consumer.version, consumer.identity) == ("datafactory", V1, UAI)
        assert consumer.identity_assigned and not consumer.follows_new_versions
        [unassigned] = self.kind.to_consumers(factory(assigned=False))
        assert not unassigned.identity_assigned
        [system] = self.kind.to_consumers(factory(identity=None))
        assert (system.identity, system.identity_assigned) == ("SystemAssigned", True)
        [latest] = self.kind.to_consumers(factory(version=None))
        assert latest.follows_new_versions and latest.version is None
        body = factory()
        del body["properties"]["encryption"]
        assert self.kind.to_consumers(body) == []

    def test_put_body_is_the_factory_as_read_with_the_key_moved(self) -> None:
        read = factory()
        body = self.kind.put_body(read, TO)
        assert body is not None
        assert body["properties"]["encryption"] == {
            "vaultBaseUrl": VAULT,
            "keyName": "cmk",
            "keyVersion": V2,
            "identity": {"userAssignedIdentity": UAI},
        }
        assert body["properties"]["repoConfiguration"] == read["properties"]["repoConfiguration"]
        assert (body["location"], body["tags"]) == ("East US", {"exampleTag": "exampleValue"})
        for read_only in ("id", "name", "type", "eTag", "systemData"):
            assert read_only not in body
        assert not {"provisioningState", "createTime", "version"} & set(body["properties"])
        assert body["identity"] == {
            "type": "SystemAssigned,UserAssigned",
            "userAssignedIdentities": {UAI: {}},
        }
        assert read["properties"]["encryption"]["keyVersion"] == V1  # the read itself untouched

    def test_nothing_to_put_when_already_moved_versionless_or_another_key(self) -> None:
        assert self.kind.put_body(factory(version=V2), TO) is None
        assert self.kind.put_body(factory(version=None), TO) is None
        assert self.kind.put_body(factory(), parse_key_id(f"{VAULT}keys/other/{V2}")) is None

    @pytest.mark.parametrize(
        ("key_type", "size", "blocked"), [("RSA", 3072, False), ("RSA", 1024, True), ("EC", None, True)]
    )
    def test_key_types(self, key_type: str, size: int | None, blocked: bool) -> None:
        [consumer] = self.kind.to_consumers(factory())
        decision = decide(consumer, context(key_type, size), self.kind.plan_checks)
        assert (decision.action == "blocked" and decision.reason == "key-type-unsupported") is blocked


class TestDatabricks:
    kind = DatabricksWorkspaces()

    def test_one_consumer_per_key_naming_its_entities(self) -> None:
        body = workspace(services=kvp(V1), disk=kvp(V1), dbfs=V1)
        [consumer] = self.kind.to_consumers(body)
        assert consumer.extra["entities"] == ("managedServices", "managedDisk", "dbfsRoot")
        assert (consumer.version, consumer.identity_assigned) == (V1, True)
        assert consumer.identity == (
            "managedServices: AzureDatabricks; managedDisk: managedDiskIdentity; dbfsRoot: storageAccountIdentity"
        )
        two = self.kind.to_consumers(workspace(services=kvp(V1, "other"), disk=kvp(V1)))
        assert sorted(c.key.name for c in two) == ["cmk", "other"]

    def test_a_disk_that_follows_the_key_is_auto_rotating_and_left_out_of_the_write(self) -> None:
        [alone] = self.kind.to_consumers(workspace(disk=kvp(V1), auto=True))
        assert alone.follows_new_versions
        [with_services] = self.kind.to_consumers(workspace(services=kvp(V1), disk=kvp(V1), auto=True))
        assert not with_services.follows_new_versions and with_services.extra["entities"] == (
            "managedServices",
        )
        body = self.kind.put_body(workspace(services=kvp(V1), disk=kvp(V1), auto=True), TO)
        assert body is not None
        entities = body["properties"]["encryption"]["entities"]
        assert (
            entities["managedServices"]["keyVaultProperties"]["keyVersion"],
            entities["managedDisk"]["keyVaultProperties"]["keyVersion"],
        ) == (V2, V1)

    def test_put_body_moves_every_pinned_entity_in_the_specs_casing_and_keeps_the_rest(self) -> None:
        read = workspace(services=kvp(V1), disk=kvp(V1), dbfs=V1)
        body = self.kind.put_body(read, TO)
        assert body is not None
        entities = body["properties"]["encryption"]["entities"]
        assert entities["managedServices"]["keyVaultProperties"]["keyVersion"] == V2
        assert entities["managedDisk"]["keyVaultProperties"]["keyVersion"] == V2
        dbfs = body["properties"]["parameters"]["encryption"]
        assert dbfs == {
            "value": {
                "KeyName": "cmk",
                "keySource": "Microsoft.Keyvault",
                "keyvaulturi": VAULT,
                "keyversion": V2,
            }
        }
        assert body["properties"]["parameters"]["customVirtualNetworkId"] == {
            "value": "/subscriptions/x/vnet"
        }
        assert body["properties"]["authorizations"] == read["properties"]["authorizations"]
        assert (body["sku"], body["tags"], body["location"]) == (
            {"name": "premium"},
            {"mytag1": "myvalue1"},
            "East US 2",
        )
        for read_only in (
            "provisioningState",
            "createdBy",
            "createdDateTime",
            "workspaceId",
            "workspaceUrl",
            "managedDiskIdentity",
            "storageAccountIdentity",
        ):
            assert read_only not in body["properties"]
        assert "id" not in body and "name" not in body

    def test_a_dbfs_root_without_a_key_vault_source_is_not_a_consumer(self) -> None:
        body = workspace(dbfs=V1)
        body["properties"]["parameters"]["encryption"]["value"]["keySource"] = "Default"
        assert self.kind.to_consumers(body) == []

    def test_verified_only_when_every_moved_entity_holds_the_version(self) -> None:
        [half] = self.kind.to_consumers(workspace(services=kvp(V2), disk=kvp(V1)))
        assert not self.kind.verified(half, TO)
        [whole] = self.kind.to_consumers(workspace(services=kvp(V2), disk=kvp(V2)))
        assert self.kind.verified(whole, TO)

    def test_managed_services_keep_the_old_version_24_hours(self) -> None:
        [services] = self.kind.to_consumers(workspace(services=kvp(V1), disk=kvp(V1)))
        assert self.kind.retire_grace(services) == timedelta(hours=24)
        [disk] = self.kind.to_consumers(workspace(disk=kvp(V1), dbfs=V1))
        assert self.kind.retire_grace(disk) == timedelta(0)

    def test_the_plan_names_the_entities_and_the_grace(self) -> None:
        [consumer] = self.kind.to_consumers(workspace(services=kvp(V1), dbfs=V1))
        decision = decide(consumer, context(), self.kind.plan_checks)
        assert (decision.action, decision.reason) == ("update", "behind-desired")
        assert decision.message.startswith("managedServices, dbfsRoot behind the desired version")
        assert "24 h" in decision.message
        expired = VersionInfo(
            V1, True, datetime(2026, 1, 1, tzinfo=UTC), None, datetime(2026, 2, 1, tzinfo=UTC)
        )
        ctx = context()
        desired = ctx.state.desired
        assert desired is not None
        late = PolicyContext(KeyState(KEY, (expired, desired), V2, desired, None, "Recoverable"), ctx.now)
        assert decide(consumer, late, self.kind.plan_checks).reason == "current-version-expired"

    def test_managed_hsm_key_ids(self) -> None:
        hsm = {"keyName": "cmk", "keyVaultUri": "https://contoso-hsm.managedhsm.azure.net/", "keyVersion": V1}
        [consumer] = self.kind.to_consumers(workspace(services=hsm))
        assert consumer.key.in_managed_hsm
        to = KeyRef("contoso-hsm.managedhsm.azure.net", "cmk", V2)
        body = self.kind.put_body(workspace(services=hsm), to)
        assert body is not None
        assert (
            body["properties"]["encryption"]["entities"]["managedServices"]["keyVaultProperties"][
                "keyVersion"
            ]
            == V2
        )


def test_a_refused_identity_assignment_names_the_role_to_grant() -> None:
    info = ErrorInfo(False, False, 403, "LinkedAuthorizationFailed", "does not have permission to assign")
    [hint] = [h for h in DataFactories().hints if h.matches(info)]
    assert "dataFactoryIdentityScopes" in hint.text


def test_entities_on_different_versions_claim_no_version_and_are_all_moved() -> None:
    kind = DatabricksWorkspaces()
    [consumer] = kind.to_consumers(workspace(services=kvp(V2), disk=kvp(V1)))
    assert consumer.version is None and not consumer.follows_new_versions
    decision = decide(consumer, context(), kind.plan_checks)
    assert (decision.action, decision.reason) == ("update", "behind-desired")
    assert f"managedServices on {V2}, managedDisk on {V1}" in decision.message
    body = kind.put_body(workspace(services=kvp(V2), disk=kvp(V1)), TO)
    assert body is not None
    assert (
        body["properties"]["encryption"]["entities"]["managedDisk"]["keyVaultProperties"]["keyVersion"] == V2
    )


class OneResourceArm:
    """ARM holding one resource (its GET answers it with an ETag), recording the writes asked."""

    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource
        self.writes: list[tuple[Any, ...]] = []

    def get_tagged(self, resource_id: str, api_version: str) -> tuple[dict[str, Any], str]:
        return self.resource, '"1"'

    def write(self, *args: Any) -> dict[str, Any]:
        self.writes.append(args)
        return self.resource


class Clients:
    def __init__(self, arm: OneResourceArm) -> None:
        self._arm = arm

    def arm(self) -> OneResourceArm:
        return self._arm


def test_a_workspace_read_mid_update_is_waited_out_not_put_back() -> None:
    kind = DatabricksWorkspaces()
    busy = workspace(services=kvp(V1))
    busy["properties"]["provisioningState"] = "Updating"
    [consumer] = kind.to_consumers(busy)
    arm = OneResourceArm(busy)
    with pytest.raises(TransientCondition):
        kind.apply(Clients(arm), consumer, TO, ApplyContext("run-1", "pytest"))  # type: ignore[arg-type]
    assert arm.writes == []
