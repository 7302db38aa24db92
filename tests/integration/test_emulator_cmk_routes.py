"""The emulator's Storage, Disk Encryption Set and SQL routes and its Managed HSM hosts, driven by
the product's generic ARM client and the real KeyClient through the HTTPS proxy."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.keyvault.keys import (
    KeyClient,
    KeyRotationLifetimeAction,
    KeyRotationPolicy,
    KeyRotationPolicyAction,
)

from rotation.azure.retry import classify
from tests import scenarios as s
from tests.scenarios import data_key

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
STORAGE_API, DES_API, SQL_API = "2024-01-01", "2024-03-02", "2023-08-01"


def storage_patch(version: str, identity: str) -> dict[str, Any]:
    """A Storage PATCH body moving the account to data-cmk `version`, read with `identity`."""
    vault = {"keyvaulturi": f"https://{s.VAULT_HOST}", "keyname": "data-cmk", "keyversion": version}
    encryption = {
        "keySource": "Microsoft.Keyvault",
        "keyvaultproperties": vault,
        "identity": {"userAssignedIdentity": identity},
    }
    return {"properties": {"encryption": encryption}}


def test_storage_lists_by_page_and_patches_synchronously(stack) -> None:
    stack.load(
        s.scenario(
            {"data-cmk": data_key()},
            storage_accounts=[s.storage(f"st{i}", s.key_id("data-cmk", OLD)) for i in range(5)],
        )
    )
    stack.admin.configure(armPageSize=2)
    arm = stack.service().clients.arm()
    listed = list(arm.list_by_subscription(s.SUB_A, "Microsoft.Storage/storageAccounts", STORAGE_API))
    assert sorted(a["name"] for a in listed) == [f"st{i}" for i in range(5)]
    vault = listed[0]["properties"]["encryption"]["keyvaultproperties"]
    assert vault == {
        "keyvaulturi": f"https://{s.VAULT_HOST}/",
        "keyname": "data-cmk",
        "keyversion": OLD,
        "currentVersionedKeyIdentifier": s.key_id("data-cmk", OLD),
    }
    body = storage_patch(NEW, s.identity_id("uai-storage"))
    after = arm.begin_patch(s.storage_id("st0"), STORAGE_API, body).result()
    assert after["properties"]["encryption"]["keyvaultproperties"]["keyversion"] == NEW
    patches = [c for c in stack.admin.calls()["calls"] if c["method"] == "PATCH"]
    assert [c["status"] for c in patches] == [200]  # synchronous: no operation to poll


def test_storage_takes_a_new_identity_and_key_in_one_request(stack) -> None:
    # the spec's example StorageAccountUpdateUserAssignedEncryptionIdentityWithCMK sends both at once
    other = s.identity_id("uai-other")
    stack.load(
        s.scenario(
            {"data-cmk": data_key()},
            storage_accounts=[
                s.storage("st0", s.key_id("data-cmk", OLD), identities=[s.identity_id("uai-storage"), other])
            ],
        )
    )
    arm = stack.service().clients.arm()
    after = arm.begin_patch(s.storage_id("st0"), STORAGE_API, storage_patch(NEW, other)).result()
    encryption = after["properties"]["encryption"]
    assert encryption["keyvaultproperties"]["keyversion"] == NEW
    assert encryption["identity"]["userAssignedIdentity"].lower() == other.lower()
    with pytest.raises(HttpResponseError) as raised:  # an identity the account does not have is still refused
        arm.begin_patch(s.storage_id("st0"), STORAGE_API, storage_patch(OLD, s.identity_id("uai-x"))).result()
    assert raised.value.status_code == 400 and "not associated" in str(raised.value)


def test_disk_encryption_set_patch_is_long_running_and_its_source_vault_is_optional(stack) -> None:
    stack.load(
        s.scenario(
            {"data-cmk": data_key()}, encryption_sets=[s.encryption_set("des1", s.key_id("data-cmk", OLD))]
        )
    )
    arm = stack.service().clients.arm()
    source = arm.get(s.des_id("des1"), DES_API)["properties"]["activeKey"]["sourceVault"]
    # Compute 2024-03-02: sourceVault is optional; when given it must be the key's vault, same subscription
    other_vault = {"id": source["id"].rsplit("/", 1)[0] + "/elsewhere"}
    foreign = {"id": source["id"].replace(s.SUB_A, s.SUB_B)}
    for wrong in (other_vault, foreign):
        body = {"properties": {"activeKey": {"keyUrl": s.key_id("data-cmk", NEW), "sourceVault": wrong}}}
        with pytest.raises(HttpResponseError) as raised:
            arm.begin_patch(s.des_id("des1"), DES_API, body)
        assert classify(raised.value).code == "InvalidParameter"
    body = {"properties": {"activeKey": {"keyUrl": s.key_id("data-cmk", NEW)}}}
    after = arm.begin_patch(s.des_id("des1"), DES_API, body).result()
    assert after["properties"]["activeKey"]["keyUrl"] == s.key_id("data-cmk", NEW)
    assert "lastKeyRotationTimestamp" in after["properties"]
    [patch] = [c for c in stack.admin.calls()["calls"] if c["method"] == "PATCH" and c["status"] == 202]
    assert patch["path"] == s.des_id("des1")
    # Compute's spec: 202 with Location only, polled at /operationResults/ until it answers the set
    assert any("/operationResults/" in c["path"] for c in stack.admin.calls()["calls"])
    assert not any("/operations/" in c["path"] for c in stack.admin.calls()["calls"])


def test_sql_server_key_then_protector_and_refusals(stack) -> None:
    big = data_key()
    stack.load(
        s.scenario(
            {"data-cmk": big, "big-cmk": {**data_key(), "size": 4096}},
            sql_servers=[s.sql_server("sql1", s.key_id("data-cmk", OLD))],
        )
    )
    arm = stack.service().clients.arm()
    server = s.sql_id("sql1")
    protector = arm.get(f"{server}/encryptionProtector/current", SQL_API)
    assert protector["properties"] == {
        "serverKeyName": f"contoso-cmk_data-cmk_{OLD}",
        "serverKeyType": "AzureKeyVault",
        "uri": s.key_id("data-cmk", OLD),
        "autoRotationEnabled": False,
    }
    name = f"contoso-cmk_data-cmk_{NEW}"
    assert arm.get(f"{server}/keys/{name}", SQL_API) is None
    with pytest.raises(HttpResponseError) as refused:  # the protector cannot name a key the server lacks
        arm.begin_put(
            f"{server}/encryptionProtector/current",
            SQL_API,
            {"properties": {"serverKeyType": "AzureKeyVault", "serverKeyName": name}},
        )
    assert classify(refused.value).code == "ServerKeyDoesNotExists"
    big_name = f"contoso-cmk_big-cmk_{NEW}"
    with pytest.raises(HttpResponseError) as too_big:
        arm.begin_put(
            f"{server}/keys/{big_name}",
            SQL_API,
            {"properties": {"serverKeyType": "AzureKeyVault", "uri": s.key_id("big-cmk", NEW)}},
        )
    assert classify(too_big.value).code == "AzureKeyVaultRsaKeyNotSupported"
    key = arm.begin_put(
        f"{server}/keys/{name}",
        SQL_API,
        {"properties": {"serverKeyType": "AzureKeyVault", "uri": s.key_id("data-cmk", NEW)}},
    ).result()
    assert key["name"] == name and key["properties"]["uri"] == s.key_id("data-cmk", NEW)
    body = {
        "properties": {"serverKeyType": "AzureKeyVault", "serverKeyName": name, "autoRotationEnabled": False}
    }
    after = arm.begin_put(f"{server}/encryptionProtector/current", SQL_API, body).result()
    assert after["properties"]["uri"] == s.key_id("data-cmk", NEW)
    assert arm.get(server, SQL_API)["properties"]["keyId"] == s.key_id("data-cmk", NEW)


def test_sql_refuses_a_server_key_whose_identity_the_vault_denies(stack) -> None:
    scenario = s.scenario(
        {"data-cmk": data_key()}, sql_servers=[s.sql_server("sql1", s.key_id("data-cmk", OLD))]
    )
    scenario["vaults"][s.VAULT]["deniedIdentities"] = [s.identity_id("uai-sql")]
    stack.load(scenario)
    name = f"contoso-cmk_data-cmk_{NEW}"
    with pytest.raises(HttpResponseError) as raised:
        stack.service().clients.arm().begin_put(
            f"{s.sql_id('sql1')}/keys/{name}",
            SQL_API,
            {"properties": {"serverKeyType": "AzureKeyVault", "uri": s.key_id("data-cmk", NEW)}},
        )
    info = classify(raised.value)
    assert (info.status, info.code, info.transient) == (400, "AzureKeyVaultMissingPermissions", False)
    assert "403" in str(raised.value)


def test_managed_hsm_serves_the_keys_api_with_its_own_audience(stack) -> None:
    stack.set(ROTATION_ALLOWED_VAULTS=f"{s.VAULT_HOST},{s.HSM_HOST}")
    stack.load(s.scenario({}, hsm_keys={"hsm-cmk": s.key(s.version("old"), kty="RSA-HSM")}))
    clients = stack.service().clients
    client: KeyClient = clients.keys(f"https://{s.HSM_HOST}")  # challenge verification left on
    key = client.get_key("hsm-cmk")
    assert key.id == s.hsm_key_id("hsm-cmk", OLD) and key.key_type == "RSA-HSM"
    policy = KeyRotationPolicy(
        lifetime_actions=[
            KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_before_expiry="P30D")
        ],
        expires_in="P1Y",
    )
    client.update_key_rotation_policy("hsm-cmk", policy)
    rotated = client.rotate_key("hsm-cmk")
    assert rotated.properties.version != OLD
    assert client.get_key_rotation_policy("hsm-cmk").expires_in == "P1Y"
    # A pool or vault that does not exist has no DNS name: the proxy cannot resolve it. Vault and
    # HSM names are separate name spaces, so contoso-hsm is not a vault.
    with pytest.raises(ServiceRequestError):
        clients.keys("https://nosuchpool.managedhsm.azure.net").get_key("hsm-cmk")
    with pytest.raises(ServiceRequestError):
        clients.keys(f"https://{s.HSM}.vault.azure.net").get_key("hsm-cmk")


def test_managed_hsm_refuses_a_vault_token_and_challenges_for_its_own_audience(stack) -> None:
    import requests
    from azure.identity import ManagedIdentityCredential

    stack.load(s.scenario({}, hsm_keys={"hsm-cmk": s.key(s.version("old"), kty="RSA-HSM")}))
    url = f"https://{s.HSM_HOST}/keys/hsm-cmk?api-version=7.5"
    credential = ManagedIdentityCredential()
    vault_token = credential.get_token("https://vault.azure.net/.default").token
    refused = requests.get(url, headers={"Authorization": f"Bearer {vault_token}"}, timeout=30)
    assert refused.status_code == 401
    assert 'resource="https://managedhsm.azure.net"' in refused.headers["WWW-Authenticate"]
    hsm_token = credential.get_token("https://managedhsm.azure.net/.default").token
    answered = requests.get(url, headers={"Authorization": f"Bearer {hsm_token}"}, timeout=30)
    assert answered.status_code == 200 and answered.json()["key"]["kid"] == s.hsm_key_id("hsm-cmk", OLD)
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(answered.json()["key"])  # no private material
