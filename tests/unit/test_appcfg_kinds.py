"""App Configuration, HDInsight and Synapse kinds and AKS KMS data encryption (issue 25): the
mapping of ARM bodies shaped like the REST specs' examples (Microsoft.AppConfiguration
2024-06-01, Microsoft.HDInsight 2021-06-01, Microsoft.Synapse 2021-06-01,
Microsoft.ContainerService 2025-10-02-preview) to Consumers, each write's body, and the plan
checks: key types, identities, Synapse's procedure, AKS's auto-rotating new KMS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.azure.kinds.aks import ManagedClusters
from rotation.azure.kinds.appconfiguration import ConfigurationStores
from rotation.azure.kinds.armkind import NeverWritten
from rotation.azure.kinds.hdinsight import HDInsightClusters
from rotation.azure.kinds.protocol import is_busy
from rotation.azure.kinds.synapse import SynapseWorkspaces
from rotation.model.decisions import PolicyContext
from rotation.model.ids import parse_key_id
from rotation.model.keystate import KeyState, VersionInfo
from rotation.run.policy import decide

SUB = "c80fb759-c965-4c6a-9110-9b2b2d038882"
UAI = f"/subscriptions/{SUB}/resourcegroups/myResourceGroup1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/identity2"
CLIENT_ID = "cccccccc-cccc-cccc-cccc-cccccccccccc"
V1, V2 = "654f76c4e63845cbb50fd6f751540429", "9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b"
VAULT = "https://contoso-cmk.vault.azure.net"


def identity(system: bool = False) -> dict[str, Any]:
    return {
        "type": "SystemAssigned, UserAssigned" if system else "UserAssigned",
        "principalId": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa" if system else None,
        "userAssignedIdentities": {
            UAI: {"clientId": CLIENT_ID, "principalId": "dddddddd-dddd-dddd-dddd-dddddddddddd"}
        },
    }


def store(key_id: str | None, client_id: str | None = CLIENT_ID, *, system: bool = False) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/myResourceGroup/providers/Microsoft.AppConfiguration/configurationStores/contoso",
        "name": "contoso",
        "type": "Microsoft.AppConfiguration/configurationStores",
        "location": "westus",
        "sku": {"name": "Standard"},
        "identity": identity(system),
        "properties": {
            "provisioningState": "Succeeded",
            "endpoint": "https://contoso.azconfig.io",
            "encryption": {"keyVaultProperties": {"keyIdentifier": key_id, "identityClientId": client_id}},
        },
    }


def hdi(version: str, msi: str = UAI) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.HDInsight/clusters/cluster1",
        "name": "cluster1",
        "type": "Microsoft.HDInsight/clusters",
        "location": "West US",
        "identity": identity(),
        "properties": {
            "provisioningState": "Succeeded",
            "clusterState": "Running",
            "diskEncryptionProperties": {
                "vaultUri": f"{VAULT}/",
                "keyName": "hdi-cmk",
                "keyVersion": version,
                "msiResourceId": msi,
                "encryptionAlgorithm": "RSA-OAEP",
            },
        },
    }


def workspace(key_url: str, *, system: bool = True) -> dict[str, Any]:
    kek = {"useSystemAssignedIdentity": True} if system else {"userAssignedIdentity": UAI}
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/resourceGroup1/providers/Microsoft.Synapse/workspaces/workspace1",
        "name": "workspace1",
        "type": "Microsoft.Synapse/workspaces",
        "location": "East US",
        "identity": {"type": "SystemAssigned", "principalId": "77e38e67-1eee-4f39-a7b4-a5e4b6e0e4a1"},
        "properties": {
            "provisioningState": "Succeeded",
            "encryption": {
                "cmk": {
                    "status": "Enabled",
                    "kekIdentity": kek,
                    "key": {"name": "default", "keyVaultUrl": key_url},
                }
            },
        },
    }


def aks_new_kms(key_id: str, infrastructure: str | None = "Enabled") -> dict[str, Any]:
    security: dict[str, Any] = {
        "azureKeyVaultKms": {"enabled": True, "keyId": key_id, "keyVaultNetworkAccess": "Public"}
    }
    if infrastructure:
        security["kubernetesResourceObjectEncryptionProfile"] = {"infrastructureEncryption": infrastructure}
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.ContainerService/managedClusters/clustername1",
        "name": "clustername1",
        "type": "Microsoft.ContainerService/ManagedClusters",
        "location": "location1",
        "identity": identity(),
        "properties": {"provisioningState": "Succeeded", "securityProfile": security},
    }


def context(key_type: str = "RSA", size: int | None = 2048) -> PolicyContext:
    """V1 older, V2 the desired version, of this type and size."""
    now = datetime.now(UTC)
    versions = tuple(
        VersionInfo(v, True, now - timedelta(days=d), None, None, key_type, ("wrapKey", "unwrapKey"), size)
        for v, d in ((V1, 200), (V2, 1))
    )
    return PolicyContext(
        KeyState(parse_key_id(f"{VAULT}/keys/k"), versions, V2, versions[1], None, None), now
    )


# -- App Configuration ----------------------------------------------------------------------
def test_app_configuration_names_its_identity_by_client_id_and_writes_only_the_key() -> None:
    kind = ConfigurationStores()
    [pinned] = kind.to_consumers(store(f"{VAULT}/keys/appcs/{V1}"))
    assert pinned.identity == UAI and pinned.identity_assigned and not pinned.follows_new_versions
    to_key = pinned.key.with_version(V2)
    assert kind.write_body(pinned, to_key) == {
        "properties": {
            "encryption": {
                "keyVaultProperties": {
                    "keyIdentifier": f"{VAULT}/keys/appcs/{V2}",
                    "identityClientId": CLIENT_ID,
                }
            }
        }
    }
    assert decide(pinned, context(), kind.plan_checks).action == "update"


def test_app_configuration_versionless_auto_rotates_and_system_identity_counts() -> None:
    [loose] = ConfigurationStores().to_consumers(store(f"{VAULT}/keys/appcs", None, system=True))
    assert loose.follows_new_versions and loose.identity_assigned and loose.identity == "SystemAssigned"
    assert decide(loose, context(), ConfigurationStores().plan_checks).action == "auto-rotating"


def test_app_configuration_client_id_of_no_assigned_identity_is_blocked() -> None:
    stranger = "11111111-2222-3333-4444-555555555555"
    [store_] = ConfigurationStores().to_consumers(store(f"{VAULT}/keys/appcs/{V1}", stranger))
    assert not store_.identity_assigned and store_.identity == stranger
    decision = decide(store_, context(), ConfigurationStores().plan_checks)
    assert (decision.action, decision.reason) == ("blocked", "identity-not-assigned")
    [no_system] = ConfigurationStores().to_consumers(store(f"{VAULT}/keys/appcs/{V1}", None))
    assert not no_system.identity_assigned  # names no client id, and has no system-assigned identity


def test_app_configuration_without_a_customer_managed_key_is_no_consumer() -> None:
    assert ConfigurationStores().to_consumers(store(None, None)) == []


@pytest.mark.parametrize(
    ("kind", "key_type", "size", "blocked"),
    [
        (ConfigurationStores(), "EC", None, True),
        (ConfigurationStores(), "RSA-HSM", 3072, False),
        (HDInsightClusters(), "EC-HSM", None, True),
        (HDInsightClusters(), "RSA", 1024, True),
        (HDInsightClusters(), "RSA", 4096, False),
        (SynapseWorkspaces(), "RSA", 4096, True),  # Synapse: RSA 2048 and 3072 only
        (SynapseWorkspaces(), "EC", None, True),
    ],
    ids=[
        "appcs-ec",
        "appcs-rsa-hsm-3072",
        "hdi-ec-hsm",
        "hdi-rsa-1024",
        "hdi-rsa-4096",
        "syn-4096",
        "syn-ec",
    ],
)
def test_key_types_each_service_refuses_are_blocked(
    kind: Any, key_type: str, size: int | None, blocked: bool
) -> None:
    body = {
        "appconfiguration": lambda: store(f"{VAULT}/keys/k/{V1}"),
        "hdinsight": lambda: hdi(V1),
        "synapse": lambda: workspace(f"{VAULT}/keys/k/{V1}"),
    }[kind.kind]()
    [consumer] = kind.to_consumers(body)
    decision = decide(consumer, context(key_type, size), kind.plan_checks)
    assert (decision.reason == "key-type-unsupported") is blocked, decision


# -- HDInsight ------------------------------------------------------------------------------
def test_hdinsight_key_parts_msi_identity_and_the_action_body() -> None:
    kind = HDInsightClusters()
    [cluster] = kind.to_consumers(hdi(V1))
    assert (
        cluster.key.id == f"{VAULT}/keys/hdi-cmk/{V1}"
        and cluster.identity == UAI
        and cluster.identity_assigned
    )
    assert not cluster.follows_new_versions
    assert kind.write_body(cluster, cluster.key.with_version(V2)) == {
        "vaultUri": VAULT,
        "keyName": "hdi-cmk",
        "keyVersion": V2,
    }
    in_progress = hdi(V1)
    in_progress["properties"]["provisioningState"] = "InProgress"  # an operation on the cluster runs
    [busy] = kind.to_consumers(in_progress)
    assert is_busy(busy) and not is_busy(cluster)  # the write waits, a read-back is not taken as final
    other = UAI.replace("identity2", "identity9")
    [lost] = kind.to_consumers(hdi(V1, other))
    assert decide(lost, context(), kind.plan_checks).reason == "identity-not-assigned"


# -- Synapse --------------------------------------------------------------------------------
def test_synapse_is_manual_required_with_the_switch_procedure_and_never_written() -> None:
    kind = SynapseWorkspaces()
    [ws] = kind.to_consumers(workspace(f"{VAULT}/keys/syn-cmk/{V1}"))
    assert ws.identity == "SystemAssigned" and ws.identity_assigned and not ws.follows_new_versions
    decision = decide(ws, context(), kind.plan_checks)
    assert (decision.action, decision.reason) == ("manual-required", "synapse-reencrypt-by-key-switch")
    assert "temporary" in decision.message and "az synapse workspace key activate" in decision.message
    assert f"version {V2}" in decision.message and "Keep the old version enabled" in decision.message
    with pytest.raises(NeverWritten):
        kind.apply(None, ws, ws.key.with_version(V2), None)  # type: ignore[arg-type]  # refused before any client
    assert (
        f"--key-identifier {VAULT}/keys/syn-cmk/{V2}" in decision.message
    )  # pinned: a key on the new version
    [versionless] = kind.to_consumers(workspace(f"{VAULT}/keys/syn-cmk"))
    loose = decide(versionless, context(), kind.plan_checks)
    assert loose.action == "manual-required"  # never follows by itself
    assert "activate 'default' again" in loose.message and f"it takes version {V2}" in loose.message
    odd = workspace(f"{VAULT}/keys/syn-cmk/{V1}")
    odd["properties"]["encryption"]["cmk"]["key"]["name"] = "k; rm -rf ~"
    [odd_ws] = kind.to_consumers(odd)
    assert "rm -rf" not in decide(odd_ws, context(), kind.plan_checks).message  # never put in a command
    [user] = kind.to_consumers(workspace(f"{VAULT}/keys/syn-cmk/{V1}", system=False))
    assert user.identity == UAI and not user.identity_assigned  # the workspace holds only its own identity


# -- AKS KMS data encryption ----------------------------------------------------------------
def test_aks_infrastructure_encryption_with_a_versionless_key_is_auto_rotating() -> None:
    kind = ManagedClusters()
    [new_kms] = kind.to_consumers(aks_new_kms(f"{VAULT}/keys/kms"))
    assert new_kms.follows_new_versions
    assert decide(new_kms, context(), kind.plan_checks).action == "auto-rotating"
    # a versioned key id under the new KMS, or the legacy KMS, still needs a person
    for body in (aks_new_kms(f"{VAULT}/keys/kms/{V1}"), aks_new_kms(f"{VAULT}/keys/kms", None)):
        [cluster] = kind.to_consumers(body)
        assert decide(cluster, context(), kind.plan_checks).action == "manual-required"


def test_the_demo_estate_holds_one_of_each_and_plans_them() -> None:
    """tools/demo.py's scenario: a store and a cluster it rotates, a workspace left to a person,
    an AKS cluster on KMS data encryption; each read back through its kind as the emulator serves it."""
    import json

    from emulator.app import EmulatorApp
    from emulator.http import Request
    from tools.demo import SCENARIO

    app = EmulatorApp()
    app.load_scenario(json.loads(SCENARIO.read_text()))
    sub = "/subscriptions/00000000-0000-0000-0000-000000000001"
    found: dict[str, str] = {}
    for kind in (ConfigurationStores(), HDInsightClusters(), SynapseWorkspaces(), ManagedClusters()):
        request = Request("GET", "management.azure.com", f"{sub}/providers/{kind.resource_type}", {}, {}, b"")
        answer = app.arm.router.dispatch(request)
        assert answer is not None
        for resource in json.loads(answer.body)["value"]:
            for consumer in kind.to_consumers(resource):
                found[consumer.resource_id.name] = decide(consumer, context(), kind.plan_checks).action
    assert found == {
        "contoso-appconfig": "update",
        "contoso-spark": "update",
        "contoso-synapse": "manual-required",
        "contoso-aks": "manual-required",
        "contoso-aks-kms2": "auto-rotating",
    }


def test_app_configuration_takes_a_managed_hsm_key_id_as_it_is() -> None:
    """keyIdentifier is a whole key id: a Managed HSM pool's (https://<pool>.managedhsm.azure.net/keys/...)
    is read and written in the same field, RSA-HSM accepted."""
    hsm = f"https://contoso-hsm.managedhsm.azure.net/keys/appcs/{V1}"
    kind = ConfigurationStores()
    [pinned] = kind.to_consumers(store(hsm))
    assert pinned.key.in_managed_hsm
    body = kind.write_body(pinned, pinned.key.with_version(V2))
    assert body["properties"]["encryption"]["keyVaultProperties"]["keyIdentifier"] == hsm.replace(V1, V2)
    assert decide(pinned, context("RSA-HSM", 3072), kind.plan_checks).action == "update"
