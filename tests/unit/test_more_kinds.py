"""The kind modules' mapping of ARM bodies to Consumers, on bodies shaped like the REST specs'
examples (Microsoft.OperationalInsights 2023-09-01, Microsoft.Kusto 2023-08-15,
Microsoft.EventHub / Microsoft.ServiceBus 2024-01-01, Microsoft.DocumentDB 2024-11-15,
Microsoft.ContainerService 2024-09-01), and the plan checks of Cosmos DB and AKS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.azure.kinds.aks import ManagedClusters
from rotation.azure.kinds.armkind import NeverWritten
from rotation.azure.kinds.cosmos import CosmosAccounts
from rotation.azure.kinds.kusto import KustoClusters
from rotation.azure.kinds.log_analytics import LogAnalyticsClusters
from rotation.azure.kinds.messaging import EventHubNamespaces, ServiceBusNamespaces, moved
from rotation.model.decisions import MANUAL_REQUIRED, NEEDS_PERSON, PolicyContext
from rotation.model.ids import parse_key_id
from rotation.model.keystate import KeyState, VersionInfo
from rotation.run.policy import decide

SUB = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
UAI = f"/subscriptions/{SUB}/resourcegroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/myidentity"
V1, V2 = "654f76c4e63845cbb50fd6f751540429", "9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b"
VAULT = "https://contoso-cmk.vault.azure.net"


def uai_identity(*ids: str) -> dict[str, Any]:
    return {
        "type": "UserAssigned",
        "tenantId": "72f999bf-acf1-41af-91ab-2d7cd011db47",
        "userAssignedIdentities": {
            i: {
                "clientId": "eb3a943d-6b12-48a6-b585-ac2316e15ab2",
                "principalId": "b31776d4-ee80-4860-9433-ec0101be1891",
            }
            for i in ids
        },
    }


def la_cluster(version: str, identity: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"/subscriptions/{SUB}/resourceGroups/oiautorest6685/providers/Microsoft.OperationalInsights/clusters/oiautorest6685",
        "name": "oiautorest6685",
        "type": "Microsoft.OperationalInsights/clusters",
        "location": "australiasoutheast",
        "properties": {
            "billingType": "Cluster",
            "clusterId": "1c3f2afc-9ec1-4e74-bfe8-022b83bcd7b1",
            "keyVaultProperties": {"keyName": "aztest2170cert", "keyVaultUri": VAULT, "keyVersion": version},
            "provisioningState": "Succeeded",
        },
        "sku": {"name": "CapacityReservation", "capacity": 1000},
        "tags": {"tag1": "val1"},
    }
    if identity:
        body["identity"] = identity
    return body


def test_log_analytics_pinned_versionless_and_without_identity() -> None:
    [pinned] = LogAnalyticsClusters().to_consumers(la_cluster(V1, uai_identity(UAI)))
    assert pinned.key.id == f"{VAULT}/keys/aztest2170cert/{V1}" and not pinned.follows_new_versions
    assert pinned.identity == UAI.lower() and pinned.identity_assigned and pinned.tags == {"tag1": "val1"}
    [latest] = LogAnalyticsClusters().to_consumers(
        la_cluster("", {"type": "SystemAssigned", "principalId": "p"})
    )
    assert latest.version is None and latest.follows_new_versions and latest.identity_assigned
    [lost] = LogAnalyticsClusters().to_consumers(la_cluster(V1, None))
    assert not lost.identity_assigned
    assert LogAnalyticsClusters().to_consumers(la_cluster("not-a-version", None)) == []


def test_kusto_names_its_user_identity() -> None:
    body: dict[str, Any] = {
        "id": f"/subscriptions/{SUB}/resourceGroups/kustorptest/providers/Microsoft.Kusto/clusters/kustoCluster",
        "name": "kustoCluster",
        "type": "Microsoft.Kusto/clusters",
        "location": "westus",
        "identity": uai_identity(UAI),
        "properties": {
            "state": "Running",
            "provisioningState": "Succeeded",
            "keyVaultProperties": {
                "keyName": "keyName",
                "keyVersion": V1,
                "keyVaultUri": VAULT,
                "userIdentity": UAI,
            },
        },
    }
    [adx] = KustoClusters().to_consumers(body)
    assert adx.identity == UAI and adx.identity_assigned and adx.version == V1
    body["properties"]["keyVaultProperties"]["userIdentity"] = UAI.replace("myidentity", "gone")
    [lost] = KustoClusters().to_consumers(body)
    assert not lost.identity_assigned


def namespace(resource_type: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/ArunMonocle/providers/{resource_type}/sdk-Namespace-2924",
        "name": "sdk-Namespace-2924",
        "type": resource_type,
        "location": "East US",
        "identity": uai_identity(UAI),
        "sku": {"name": "Premium", "tier": "Premium", "capacity": 1},
        "properties": {
            "provisioningState": "Succeeded",
            "encryption": {
                "keySource": "Microsoft.KeyVault",
                "keyVaultProperties": list(entries),
                "requireInfrastructureEncryption": False,
            },
        },
    }


def entry(name: str, version: str) -> dict[str, Any]:
    return {
        "keyName": name,
        "keyVaultUri": VAULT,
        "keyVersion": version,
        "identity": {"userAssignedIdentity": UAI},
    }


@pytest.mark.parametrize(
    ("kind", "resource_type"),
    [
        (EventHubNamespaces(), "Microsoft.EventHub/namespaces"),
        (ServiceBusNamespaces(), "Microsoft.ServiceBus/namespaces"),
    ],
)
def test_a_namespace_is_one_consumer_per_key_and_the_write_moves_only_that_key(
    kind: Any, resource_type: str
) -> None:
    body = namespace(resource_type, entry("Key1", V1), entry("Key2", ""))
    one, two = kind.to_consumers(body)
    assert (one.key.name, one.version, one.follows_new_versions) == ("Key1", V1, False)
    assert (two.key.name, two.version, two.follows_new_versions) == ("Key2", None, True)
    assert one.identity == UAI and one.identity_assigned
    written = moved(tuple(one.extra["entries"]), parse_key_id(f"{VAULT}/keys/key1/{V2}"))
    assert written == [entry("Key1", V2), entry("Key2", "")]


def test_a_namespace_without_a_customer_managed_key_is_no_consumer() -> None:
    body = namespace("Microsoft.EventHub/namespaces", entry("Key1", V1))
    body["properties"]["encryption"]["keySource"] = "Microsoft.EventHub"
    assert EventHubNamespaces().to_consumers(body) == []


def cosmos(uri: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.DocumentDB/databaseAccounts/ddb1",
        "name": "ddb1",
        "type": "Microsoft.DocumentDB/databaseAccounts",
        "location": "West US",
        "kind": "GlobalDocumentDB",
        "properties": {
            "provisioningState": "Succeeded",
            "keyVaultKeyUri": uri,
            "defaultIdentity": "FirstPartyIdentity",
        },
    }


def aks(key_id: str, access: str = "Public") -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.ContainerService/managedClusters/clustername1",
        "name": "clustername1",
        "type": "Microsoft.ContainerService/ManagedClusters",
        "location": "location1",
        "identity": uai_identity(UAI),
        "properties": {
            "provisioningState": "Succeeded",
            "securityProfile": {
                "azureKeyVaultKms": {"enabled": True, "keyId": key_id, "keyVaultNetworkAccess": access}
            },
        },
    }


def context() -> PolicyContext:
    """V1 older, V2 the desired version."""
    now = datetime.now(UTC)
    versions = tuple(
        VersionInfo(
            v,
            True,
            now - timedelta(days=days),
            None,
            now + timedelta(days=300),
            "RSA",
            ("wrapKey", "unwrapKey"),
        )
        for v, days in ((V1, 200), (V2, 1))
    )
    key = parse_key_id(f"{VAULT}/keys/kms")
    return PolicyContext(KeyState(key, versions, V2, versions[1], None, "Recoverable"), now)


def test_cosmos_versionless_is_auto_rotating_and_a_versioned_uri_needs_a_person() -> None:
    [loose] = CosmosAccounts().to_consumers(cosmos(f"{VAULT}/keys/cosmos-cmk"))
    assert loose.follows_new_versions and loose.identity == "FirstPartyIdentity" and loose.identity_assigned
    [pinned] = CosmosAccounts().to_consumers(cosmos(f"{VAULT}/keys/cosmos-cmk/{V1}"))
    decision = decide(pinned, context(), CosmosAccounts().plan_checks)
    assert decision.action == MANUAL_REQUIRED and f"{VAULT}/keys/cosmos-cmk" in decision.message


@pytest.mark.parametrize(
    ("default_identity", "granted"),
    [
        (f"UserAssignedIdentity={UAI}", True),
        # cross-tenant CMK (the Cosmos DB docs): the identity, then the multi-tenant app's client id
        (f"UserAssignedIdentity={UAI}&FederatedClientId=11111111-2222-3333-4444-555555555555", True),
        (f"UserAssignedIdentity={UAI}x&FederatedClientId=11111111-2222-3333-4444-555555555555", False),
    ],
)
def test_cosmos_default_identity_names_the_user_assigned_identity(
    default_identity: str, granted: bool
) -> None:
    body = {**cosmos(f"{VAULT}/keys/cosmos-cmk"), "identity": uai_identity(UAI)}
    body["properties"]["defaultIdentity"] = default_identity
    [account] = CosmosAccounts().to_consumers(body)
    assert account.identity_assigned is granted
    assert account.identity is not None
    assert account.identity.lower().startswith(UAI.lower()) and "&" not in account.identity


def test_aks_is_manual_required_and_never_written() -> None:
    kind = ManagedClusters()
    [cluster] = kind.to_consumers(aks(f"{VAULT}/keys/kms/{V1}"))
    assert not cluster.follows_new_versions and cluster.identity_assigned
    decision = decide(cluster, context(), kind.plan_checks)
    assert decision.action == MANUAL_REQUIRED and MANUAL_REQUIRED in NEEDS_PERSON
    assert f"--azure-keyvault-kms-key-id {VAULT}/keys/kms/{V2}" in decision.message
    with pytest.raises(NeverWritten):
        kind.apply(None, cluster, cluster.key.with_version(V2), None)  # type: ignore[arg-type]  # refused before any client
    disabled = aks(f"{VAULT}/keys/kms/{V1}")
    disabled["properties"]["securityProfile"]["azureKeyVaultKms"]["enabled"] = False
    assert kind.to_consumers(disabled) == []
