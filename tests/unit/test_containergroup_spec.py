"""The container group's pure helpers: what a GET hid, and the spec a re-create PUTs."""

from __future__ import annotations

from typing import Any

from rotation.azure.kinds.containergroup import (
    ACI_SERVICE_PRINCIPAL,
    creatable_spec,
    secure_values_hidden,
    to_consumer,
)


def container(name: str, *variables: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "properties": {"image": "mcr.microsoft.com/app:1", "environmentVariables": list(variables)},
    }


def test_nothing_hidden_in_a_plain_group() -> None:
    properties = {
        "containers": [container("app", {"name": "MODE", "value": "prod"})],
        "imageRegistryCredentials": [{"server": "contoso.azurecr.io", "identity": "/subscriptions/x/uai"}],
        "volumes": [{"name": "data", "azureFile": {"shareName": "s", "storageAccountKey": "k"}}],
        "diagnostics": {"logAnalytics": {"workspaceId": "w", "workspaceKey": "k"}},
    }
    assert secure_values_hidden(properties) == []


def test_every_kind_of_hidden_secret_is_named() -> None:
    properties = {
        "containers": [container("app", {"name": "TOKEN"})],
        "initContainers": [container("init", {"name": "SEED"})],
        "imageRegistryCredentials": [{"server": "contoso.azurecr.io", "username": "u"}],
        "volumes": [{"name": "share", "azureFile": {"shareName": "s"}}, {"name": "certs", "secret": {}}],
        "diagnostics": {"logAnalytics": {"workspaceId": "w"}},
    }
    assert secure_values_hidden(properties) == [
        "secure environment variable TOKEN of app",
        "secure environment variable SEED of init",
        "password of registry credential contoso.azurecr.io",
        "storage account key of volume share",
        "secret volume certs",
        "Log Analytics workspace key",
    ]


def test_creatable_spec_drops_what_only_the_service_sets_and_keeps_the_rest() -> None:
    group: dict[str, Any] = {
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/g",
        "name": "g",
        "type": "Microsoft.ContainerInstance/containerGroups",
        "etag": "e",
        "systemData": {"createdBy": "x"},
        "location": "westeurope",
        "tags": {"team": "a"},
        "identity": {
            "type": "UserAssigned",
            "principalId": "p",
            "tenantId": "t",
            "userAssignedIdentities": {"/subscriptions/s/uai": {"clientId": "c", "principalId": "p"}},
        },
        "properties": {
            "provisioningState": "Succeeded",
            "instanceView": {"state": "Running"},
            "ipAddress": {"type": "Public", "ip": "20.1.2.3", "ports": [{"port": 80}]},
            "containers": [
                {"name": "app", "properties": {"image": "i", "instanceView": {"restartCount": 0}}}
            ],
            "encryptionProperties": {
                "vaultBaseUrl": "https://v.vault.azure.net",
                "keyName": "k",
                "keyVersion": "1",
            },
        },
    }
    spec = creatable_spec(group)
    assert set(spec) == {"location", "tags", "identity", "properties"}
    assert spec["identity"] == {
        "type": "UserAssigned",
        "userAssignedIdentities": {"/subscriptions/s/uai": {}},
    }
    properties = spec["properties"]
    assert "provisioningState" not in properties and "instanceView" not in properties
    assert properties["ipAddress"] == {"type": "Public", "ports": [{"port": 80}]}
    assert properties["containers"] == [{"name": "app", "properties": {"image": "i"}}]
    assert properties["encryptionProperties"]["keyVersion"] == "1"
    # the GET answer itself is untouched (it is the roll-back copy)
    assert group["properties"]["ipAddress"]["ip"] == "20.1.2.3"
    assert group["identity"]["principalId"] == "p"


def encrypted_group(**encryption: Any) -> dict[str, Any]:
    return {
        "id": "/subscriptions/5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d/resourceGroups/rg/providers/"
        "Microsoft.ContainerInstance/containerGroups/g",
        "location": "westeurope",
        "properties": {
            "containers": [container("app", {"name": "MODE", "value": "prod"})],
            "encryptionProperties": {
                "vaultBaseUrl": "https://contoso-cmk.vault.azure.net",
                "keyName": "aci-cmk",
                "keyVersion": "654f76c4e63845cbb50fd6f751540429",
                **encryption,
            },
        },
    }


def test_a_group_set_up_as_the_aci_docs_describe_reaches_its_key_with_the_service_principal() -> None:
    # no encryptionProperties.identity, no managed identity: Key Vault access granted to ACI itself
    consumer = to_consumer(encrypted_group())
    assert consumer is not None
    assert consumer.identity_assigned and consumer.identity == ACI_SERVICE_PRINCIPAL
    named = to_consumer(encrypted_group(identity="/subscriptions/s/uai-gone"))
    assert named is not None and not named.identity_assigned  # a named identity must still be assigned


def test_an_extension_whose_protected_settings_a_get_hides_makes_the_spec_unbuildable() -> None:
    extension: dict[str, Any] = {
        "name": "kube-proxy",
        "properties": {"extensionType": "kube-proxy", "version": "1.0"},
    }
    properties = {"containers": [container("app")], "extensions": [extension]}
    assert secure_values_hidden(properties) == ["protected settings of extension kube-proxy"]
    extension["properties"]["protectedSettings"] = {"kubeconfig": "..."}  # an answer that carries them
    assert secure_values_hidden(properties) == []
    assert creatable_spec({"properties": properties})["properties"]["extensions"] == [extension]
