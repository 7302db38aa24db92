"""What `az login --identity` then `az account list`, `az acr show`, `az acr encryption show`
and `az keyvault key list` do, done with the SDKs against the emulator: the managed identity
token is a JWT with Entra's claims (az and MSAL read `tid`, `oid`, `appid`, `exp` from it),
and ARM serves the subscription and tenant routes az reads after login."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from azure.core.rest import HttpRequest
from azure.identity import DefaultAzureCredential
from azure.keyvault.keys import KeyClient
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

from emulator.identity import TENANT
from tests.conftest import Stack
from tests.scenarios import (
    SUB_A,
    SUB_B,
    VAULT_HOST,
    batch,
    identity_id,
    key,
    key_id,
    registry,
    registry_id,
    scenario,
    version,
    vid,
)

pytestmark = pytest.mark.integration
ARM = "https://management.azure.com"


def estate() -> dict:
    return scenario(
        {"acr-cmk": key(version("v1")), "other": key(version("o1"))},
        registries=[registry("build", key_id("acr-cmk", vid("v1"))), registry("edge", None, sub=SUB_B)],
    )


def test_identity_token_is_a_jwt_with_entra_claims(stack: Stack) -> None:
    stack.load(estate())
    credential = DefaultAzureCredential()
    token = credential.get_token(f"{ARM}/.default")
    header = jwt.get_unverified_header(token.token)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["aud"] == ARM
    assert claims["tid"] == TENANT and claims["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert claims["appid"] and claims["oid"]
    assert claims["exp"] == token.expires_on > time.time() >= claims["nbf"]
    # a tampered token is refused: the emulator checks what it issued, not just the shape
    forged = jwt.encode({**claims, "aud": ARM}, "a key that is not the emulator's key", algorithm="HS256")
    client: ARMPipelineClient[HttpRequest, Any] = ARMPipelineClient(base_url=ARM, policies=[])
    answer = client.send_request(
        HttpRequest(
            "GET",
            f"{ARM}/subscriptions?api-version=2022-12-01",
            headers={"Authorization": f"Bearer {forged}"},
        )
    )
    assert answer.status_code == 401


def test_an_az_session_against_the_emulator(stack: Stack) -> None:
    stack.load(estate())
    credential = DefaultAzureCredential()
    policy = ARMChallengeAuthenticationPolicy(credential, f"{ARM}/.default")
    arm: ARMPipelineClient[HttpRequest, Any] = ARMPipelineClient(base_url=ARM, policies=[policy])

    subscriptions = arm.send_request(HttpRequest("GET", f"{ARM}/subscriptions?api-version=2022-12-01"))
    assert subscriptions.status_code == 200
    listed = {s["subscriptionId"]: s for s in subscriptions.json()["value"]}
    assert set(listed) == {SUB_A, SUB_B}
    assert {s["tenantId"] for s in listed.values()} == {TENANT} and listed[SUB_A]["state"] == "Enabled"
    one = arm.send_request(HttpRequest("GET", f"{ARM}/subscriptions/{SUB_A}?api-version=2022-12-01"))
    assert one.json()["id"] == f"/subscriptions/{SUB_A}"
    missing = arm.send_request(
        HttpRequest("GET", f"{ARM}/subscriptions/{'f' * 8}-0000-0000-0000-{'f' * 12}?api-version=2022-12-01")
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SubscriptionNotFound"
    tenants = arm.send_request(HttpRequest("GET", f"{ARM}/tenants?api-version=2022-12-01")).json()["value"]
    assert [t["tenantId"] for t in tenants] == [TENANT]

    registry_client = ContainerRegistryManagementClient(credential, SUB_A)
    shown = registry_client.registries.get("rg-acr", "build")  # az acr show / az acr encryption show
    assert shown.encryption.key_vault_properties.key_identifier == key_id("acr-cmk", vid("v1"))
    assert shown.encryption.key_vault_properties.identity
    assert shown.identity is not None and shown.identity.user_assigned_identities
    assert identity_id("uai-acr").lower() in {i.lower() for i in shown.identity.user_assigned_identities}

    names = {k.name for k in KeyClient(f"https://{VAULT_HOST}", credential).list_properties_of_keys()}
    assert names == {"acr-cmk", "other"}  # az keyvault key list


@pytest.mark.parametrize("api_version", ["7.6-preview.1", "7.6-preview.2"])
def test_key_vault_answers_the_api_version_az_sends(stack: Stack, api_version: str) -> None:
    """`az keyvault key show` (azure-cli 2.91) asks Key Vault with api-version 7.6-preview.2, a
    version Key Vault publishes (azure-rest-api-specs keyvault data-plane preview/7.6-preview.*)."""
    stack.load(estate())
    client = KeyClient(f"https://{VAULT_HOST}", DefaultAzureCredential(), api_version=api_version)
    shown = client.get_key("acr-cmk")
    assert shown.id == key_id("acr-cmk", vid("v1"))


def _listed(arm: ARMPipelineClient[HttpRequest, Any], url: str) -> list[str]:
    """Every page of an ARM list, followed by nextLink: the names listed."""
    names: list[str] = []
    while url:
        page = arm.send_request(HttpRequest("GET", url))
        assert page.status_code == 200, page.text()
        names += [item["name"] for item in page.json()["value"]]
        url = page.json().get("nextLink")
    return names


def test_resources_list_finds_a_registry_by_name_as_az_acr_show_does(stack: Stack) -> None:
    """`az acr show -n NAME` without a group lists the subscription's resources filtered by type
    (Microsoft.Resources Resources_List, api-version 2024-11-01) to find the registry's group."""
    old = key_id("acr-cmk", vid("v1"))
    stack.load(
        scenario(
            {"acr-cmk": key(version("v1"))},
            registries=[registry("build", old), registry("edge", old), registry("far", old, sub=SUB_B)],
            batch_accounts=[batch("jobs", old)],
        )
    )
    stack.admin.configure(armPageSize=1)  # the filter holds on every page, not only the first
    policy = ARMChallengeAuthenticationPolicy(DefaultAzureCredential(), f"{ARM}/.default")
    arm: ARMPipelineClient[HttpRequest, Any] = ARMPipelineClient(base_url=ARM, policies=[policy])
    resources = f"{ARM}/subscriptions/{SUB_A}/resources?api-version=2024-11-01"
    registries = resources + "&$filter=resourceType eq 'Microsoft.ContainerRegistry/registries'"
    assert _listed(arm, registries) == ["build", "edge"]
    assert sorted(_listed(arm, resources)) == ["build", "edge", "jobs"]
    first = arm.send_request(HttpRequest("GET", registries)).json()["value"][0]
    assert first["id"] == registry_id("build") and first["type"] == "Microsoft.ContainerRegistry/registries"
    assert "properties" not in first and first["identity"]["userAssignedIdentities"]
    refused = arm.send_request(HttpRequest("GET", resources + "&$filter=location eq 'westeurope'"))
    assert refused.status_code == 400  # a filter it cannot apply is refused, never ignored
