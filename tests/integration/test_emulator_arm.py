"""The emulator's ARM routes, driven by the real management SDKs (Container Registry, Batch,
Container Instances) through the proxy at https://management.azure.com, including the checks a
resource provider makes against Key Vault before it takes a key."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.mgmt.batch import BatchManagementClient
from azure.mgmt.batch import models as batch_models
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerinstance import models as aci
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry import models as acr

from tests.scenarios import (
    SUB_A,
    SUB_B,
    VAULT_HOST,
    batch,
    group,
    identity_id,
    key,
    key_id,
    registry,
    registry_id,
    scenario,
    version,
    vid,
)
from tests.support.shapes import json_keys

pytestmark = pytest.mark.integration

ARM = "management.azure.com"
POLL = 0.05
SECRET_FIELDS = {"secureValue", "password", "storageAccountKey"}


def registries(sub: str = SUB_A, **kwargs: Any) -> Any:
    return ContainerRegistryManagementClient(DefaultAzureCredential(), sub, **kwargs).registries


def batch_accounts(sub: str = SUB_A, **kwargs: Any) -> Any:
    return BatchManagementClient(DefaultAzureCredential(), sub, **kwargs).batch_account


def container_groups(sub: str = SUB_A, **kwargs: Any) -> Any:
    return ContainerInstanceManagementClient(DefaultAzureCredential(), sub, **kwargs).container_groups


def raw_json(pipeline_response: Any, _deserialized: Any, _headers: Any) -> Any:
    """A `cls=` callback: the response body exactly as the service sent it."""
    return json.loads(pipeline_response.http_response.text())


def arm_calls(stack: Any) -> list[dict[str, Any]]:
    return [c for c in stack.admin.calls()["calls"] if c["host"] == ARM]


def acr_update(key_url: str, identity: str | None = None) -> acr.RegistryUpdateParameters:
    properties = acr.KeyVaultProperties(key_identifier=key_url, identity=identity)
    # the typed constructor takes the nested properties; the flattened `encryption=` keyword
    # works at run time but is outside the model's declared signature
    encryption = acr.EncryptionProperty(status="enabled", key_vault_properties=properties)
    return acr.RegistryUpdateParameters(
        properties=acr.RegistryPropertiesUpdateParameters(encryption=encryption)
    )


@pytest.fixture
def estate(stack: Any) -> Any:
    keys = {
        "acr-cmk": key(
            version("a-expired", created="-400d", exp="-1d"),
            version("a1", created="-200d"),
            version("a-disabled", created="-50d", enabled=False),
            version("a-future", created="-40d", nbf="+10d"),
            version("a2", created="-1d"),
        ),
        "ec-cmk": key(version("e1"), kty="EC"),
        "sign-cmk": key(version("s1"), ops=["sign", "verify"]),
    }
    old = key_id("acr-cmk", vid("a1"))
    stack.load(
        scenario(
            keys,
            registries=[
                registry("reg1", old, tags={"team": "build"}),
                registry("reg2", old),
                registry("reg3", old),
                registry("reg4", old, rg="rg-other"),
                registry("reg5", None, rg="rg-other"),
                registry("regb", old, sub=SUB_B),
            ],
            batch_accounts=[
                batch("batch1", old),
                batch("batch2", old),
                batch("batch3", None, rg="rg-other"),
                batch("nobody", old, identities=[]),
            ],
            groups=[
                group("job1", "acr-cmk", vid("a1")),
                group("job2", "acr-cmk", vid("a1")),
                group("secure-job", "acr-cmk", vid("a1"), secure=True),
            ],
        )
    )
    return stack


# -- Container Registry ---------------------------------------------------------------------------
def test_registry_get_renders_arm_shape(estate: Any) -> None:
    reg = registries().get("rg-acr", "reg1")
    assert reg.id.endswith("/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/reg1")
    assert reg.name == "reg1"
    assert reg.sku.name == "Premium"
    assert reg.tags == {"team": "build"}
    assert reg.provisioning_state == "Succeeded"
    vault_properties = reg.encryption.key_vault_properties
    assert reg.encryption.status == "enabled"
    assert vault_properties.key_identifier == key_id("acr-cmk", vid("a1"))
    assert vault_properties.versioned_key_identifier == key_id("acr-cmk", vid("a1"))
    assert vault_properties.key_rotation_enabled is False
    uai = identity_id("uai-acr")
    assert reg.identity.type == "UserAssigned"
    assert vault_properties.identity == reg.identity.user_assigned_identities[uai].client_id
    unencrypted = registries().get("rg-other", "reg5")
    assert unencrypted.encryption.status == "disabled"
    with pytest.raises(ResourceNotFoundError) as missing:
        registries().get("rg-acr", "nosuchregistry")
    assert missing.value.error is not None
    assert missing.value.error.code == "ResourceNotFound"


def test_registry_lists_page_by_subscription_and_group(estate: Any) -> None:
    estate.admin.configure(armPageSize=2)
    estate.admin.clear_calls()
    client = registries()

    by_sub = sorted(r.name for r in client.list())
    by_group = sorted(r.name for r in client.list_by_resource_group("rg-acr"))
    other_sub = [r.name for r in registries(SUB_B).list()]

    assert by_sub == ["reg1", "reg2", "reg3", "reg4", "reg5"]
    assert by_group == ["reg1", "reg2", "reg3"]
    assert other_sub == ["regb"]
    sub_path = f"/subscriptions/{SUB_A}/providers/Microsoft.ContainerRegistry/registries"
    group_path = (
        f"/subscriptions/{SUB_A}/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries"
    )
    paths = [c["path"] for c in arm_calls(estate) if c["method"] == "GET"]
    assert paths.count(sub_path) == 3
    assert paths.count(group_path) == 2


def test_registry_update_minimal_body_is_a_long_running_operation(estate: Any) -> None:
    estate.admin.configure(lroSeconds=0.8)  # long enough to look at it mid-flight
    responses: list[Any] = []
    client = registries(raw_response_hook=lambda r: responses.append(r.http_response))
    new = key_id("acr-cmk", vid("a2"))

    poller = client.begin_update("rg-acr", "reg1", acr_update(new), polling_interval=POLL)
    during = client.get("rg-acr", "reg1")
    result = poller.result()

    assert during.provisioning_state == "Updating"
    assert during.encryption.key_vault_properties.key_identifier == key_id("acr-cmk", vid("a1"))
    assert result.provisioning_state == "Succeeded"
    assert result.encryption.key_vault_properties.key_identifier == new
    assert result.encryption.key_vault_properties.last_key_rotation_timestamp is not None
    assert result.tags == {"team": "build"}  # a PATCH without tags leaves them
    first = responses[0]
    assert (first.request.method, first.status_code) == ("PATCH", 201)
    status_url = first.headers["Azure-AsyncOperation"]
    # Container Registry scopes the status URL to the registry (its role needs operationStatuses/read).
    assert status_url.startswith(f"https://{ARM}{registry_id('reg1')}/operationStatuses/registries-")
    assert first.headers["Retry-After"].isdigit()
    polls = [c for c in arm_calls(estate) if "/operationStatuses/" in c["path"]]
    assert len(polls) >= 2 and all(c["method"] == "GET" and c["status"] == 200 for c in polls)
    statuses = [json.loads(r.text())["status"] for r in responses if "/operationStatuses/" in r.request.url]
    assert statuses[0] == "InProgress" and statuses[-1] == "Succeeded"
    assert registries().get("rg-acr", "reg1").encryption.key_vault_properties.key_identifier == new


def test_registry_update_with_full_resource_body_as_the_cli_sends(estate: Any) -> None:
    client = registries()
    body = client.get("rg-acr", "reg2", cls=raw_json)
    assert body["properties"]["loginServer"] == "reg2.azurecr.io"  # read-only fields ride along
    new = key_id("acr-cmk", vid("a2"))
    body["properties"]["encryption"]["keyVaultProperties"]["keyIdentifier"] = new

    result = client.begin_update("rg-acr", "reg2", body, polling_interval=POLL).result()

    assert result.encryption.key_vault_properties.key_identifier == new
    assert result.encryption.key_vault_properties.versioned_key_identifier == new
    after = client.get("rg-acr", "reg2", cls=raw_json)
    assert after["properties"]["policies"] == body["properties"]["policies"]
    assert after["identity"] == body["identity"]
    # The model form (read-only fields dropped by the SDK) works too, here to a versionless id.
    model = client.get("rg-acr", "reg3")
    model.encryption.key_vault_properties.key_identifier = key_id("acr-cmk")
    followed = client.begin_update("rg-acr", "reg3", model, polling_interval=POLL).result()
    assert followed.encryption.key_vault_properties.key_identifier == key_id("acr-cmk")
    assert followed.encryption.key_vault_properties.key_rotation_enabled is True
    assert followed.encryption.key_vault_properties.versioned_key_identifier == key_id("acr-cmk", vid("a2"))


@pytest.mark.parametrize(
    ("key_url", "reason"),
    [
        (key_id("acr-cmk", "0" * 32), "was not found"),
        (key_id("acr-cmk", vid("a-disabled")), "is disabled"),
        (key_id("acr-cmk", vid("a-expired")), "has expired"),
        (key_id("acr-cmk", vid("a-future")), "not yet valid"),
        (key_id("ec-cmk", vid("e1")), "only RSA and RSA-HSM"),
        (key_id("sign-cmk", vid("s1")), "does not permit"),
        (key_id("no-such-key"), "was not found"),
    ],
)
def test_registry_refuses_a_key_it_could_not_use(estate: Any, key_url: str, reason: str) -> None:
    client = registries()
    with pytest.raises(HttpResponseError) as refused:
        client.begin_update("rg-acr", "reg1", acr_update(key_url), polling_interval=POLL)
    assert refused.value.status_code == 400
    assert refused.value.error and refused.value.error.message is not None
    assert refused.value.error.code == "KeyVaultAccessFailed"
    assert reason in refused.value.error.message
    assert key_url in refused.value.error.message
    assert client.get("rg-acr", "reg1").encryption.key_vault_properties.key_identifier == key_id(
        "acr-cmk", vid("a1")
    )
    assert not estate.writes() or all(c["status"] == 400 for c in estate.writes())


def test_registry_refuses_an_identity_not_assigned_to_it(estate: Any) -> None:
    client = registries()
    # The Batch identity exists in the estate, but is not assigned to the registry.
    other = BatchManagementClient(DefaultAzureCredential(), SUB_A).batch_account.get("rg-batch", "batch1")
    assert other.identity and other.identity.user_assigned_identities
    stranger = other.identity.user_assigned_identities[identity_id("uai-batch")].client_id
    with pytest.raises(HttpResponseError) as refused:
        client.begin_update(
            "rg-acr", "reg1", acr_update(key_id("acr-cmk", vid("a2")), stranger), polling_interval=POLL
        )
    assert refused.value.status_code == 400
    assert refused.value.error and refused.value.error.message is not None
    assert refused.value.error.code == "InvalidIdentity"
    assert f"does not have access to identity '{stranger}'" in refused.value.error.message
    reg = client.get("rg-acr", "reg1")
    assert reg.encryption.key_vault_properties.key_identifier == key_id("acr-cmk", vid("a1"))
    # Naming the assigned identity explicitly is accepted.
    own = reg.encryption.key_vault_properties.identity
    done = client.begin_update(
        "rg-acr", "reg1", acr_update(key_id("acr-cmk", vid("a2")), own), polling_interval=POLL
    ).result()
    assert done.encryption.key_vault_properties.identity == own


def test_failed_operation_raises_and_keeps_the_old_key(estate: Any) -> None:
    fault = estate.admin.add_fault(
        method="PATCH", host=ARM, pathRegex="/registries/reg1$", lroResult="Failed", count=1
    )
    client = registries()
    poller = client.begin_update(
        "rg-acr", "reg1", acr_update(key_id("acr-cmk", vid("a2"))), polling_interval=POLL
    )
    with pytest.raises(HttpResponseError) as failed:
        poller.result()
    assert poller.status().lower() == "failed"
    assert "OperationFailed" in str(failed.value)
    reg = client.get("rg-acr", "reg1")
    assert reg.encryption.key_vault_properties.key_identifier == key_id("acr-cmk", vid("a1"))
    assert reg.provisioning_state == "Succeeded"
    assert next(f for f in estate.admin.faults() if f["id"] == fault)["count"] == 0
    # The next update (the fault is used up) succeeds.
    again = client.begin_update(
        "rg-acr", "reg1", acr_update(key_id("acr-cmk", vid("a2"))), polling_interval=POLL
    )
    assert again.result().encryption.key_vault_properties.key_identifier == key_id("acr-cmk", vid("a2"))


# -- Batch ----------------------------------------------------------------------------------------
def batch_update(key_url: str) -> batch_models.BatchAccountUpdateParameters:
    encryption = batch_models.EncryptionProperties(
        key_source="Microsoft.KeyVault",
        key_vault_properties=batch_models.KeyVaultProperties(key_identifier=key_url),
    )
    return batch_models.BatchAccountUpdateParameters(
        properties=batch_models.BatchAccountUpdateProperties(encryption=encryption)
    )


def test_batch_get_list_and_update(estate: Any) -> None:
    estate.admin.configure(armPageSize=2)
    client = batch_accounts()
    account = client.get("rg-batch", "batch1")
    assert account.name == "batch1"
    assert account.encryption.key_source == "Microsoft.KeyVault"
    assert account.encryption.key_vault_properties.key_identifier == key_id("acr-cmk", vid("a1"))
    assert client.get("rg-other", "batch3").encryption.key_source == "Microsoft.Batch"
    estate.admin.clear_calls()
    assert sorted(a.name for a in client.list()) == ["batch1", "batch2", "batch3", "nobody"]
    assert sorted(a.name for a in client.list_by_resource_group("rg-batch")) == ["batch1", "batch2", "nobody"]
    list_path = f"/subscriptions/{SUB_A}/providers/Microsoft.Batch/batchAccounts"
    assert [c["path"] for c in arm_calls(estate)].count(list_path) == 2

    new = key_id("acr-cmk", vid("a2"))
    updated = client.update("rg-batch", "batch1", batch_update(new))
    assert updated.encryption.key_vault_properties.key_identifier == new
    assert client.get("rg-batch", "batch1").encryption.key_vault_properties.key_identifier == new
    assert [c["status"] for c in estate.writes()] == [200]  # synchronous: no operationStatuses
    with pytest.raises(ResourceNotFoundError):
        client.get("rg-batch", "nosuchaccount")


def test_batch_refuses_a_disabled_key_and_a_missing_identity(estate: Any) -> None:
    client = batch_accounts()
    disabled = key_id("acr-cmk", vid("a-disabled"))
    with pytest.raises(HttpResponseError) as refused:
        client.update("rg-batch", "batch2", batch_update(disabled))
    assert refused.value.status_code == 400
    assert refused.value.error and refused.value.error.message is not None
    assert refused.value.error.code == "KeyVaultKeyNotAccessible"
    assert "is disabled" in refused.value.error.message
    assert client.get("rg-batch", "batch2").encryption.key_vault_properties.key_identifier == key_id(
        "acr-cmk", vid("a1")
    )
    with pytest.raises(HttpResponseError) as no_identity:
        client.update("rg-batch", "nobody", batch_update(key_id("acr-cmk", vid("a2"))))
    assert no_identity.value.error is not None
    assert no_identity.value.error.code == "AccountIdentityMissing"


# -- Container Instances --------------------------------------------------------------------------
def new_group(key_version: str, **extra: Any) -> aci.ContainerGroup:
    uai = identity_id("uai-aci")
    return aci.ContainerGroup(
        location="westeurope",
        identity=aci.ContainerGroupIdentity(
            type="UserAssigned", user_assigned_identities={uai: aci.UserAssignedIdentities()}
        ),
        containers=[
            aci.Container(
                name="app",
                image="mcr.microsoft.com/azuredocs/aci-helloworld:latest",
                resources=aci.ResourceRequirements(requests=aci.ResourceRequests(memory_in_gb=1.5, cpu=1.0)),
                environment_variables=[
                    aci.EnvironmentVariable(name="MODE", value="test"),
                    aci.EnvironmentVariable(name="API_TOKEN", secure_value="hunter2"),
                ],
            )
        ],
        os_type="Linux",
        encryption_properties=aci.EncryptionProperties(
            vault_base_url=f"https://{VAULT_HOST}", key_name="acr-cmk", key_version=key_version, identity=uai
        ),
        **extra,
    )


def test_container_group_get_and_list(estate: Any) -> None:
    estate.admin.configure(armPageSize=2)
    client = container_groups()
    job = client.get("rg-aci", "job1")
    assert job.encryption_properties.key_name == "acr-cmk"
    assert job.encryption_properties.key_version == vid("a1")
    assert job.encryption_properties.vault_base_url == f"https://{VAULT_HOST}"
    assert job.encryption_properties.identity == identity_id("uai-aci")
    assert job.provisioning_state == "Succeeded"
    assert sorted(g.name for g in client.list()) == ["job1", "job2", "secure-job"]
    assert sorted(g.name for g in client.list_by_resource_group("rg-aci")) == ["job1", "job2", "secure-job"]
    with pytest.raises(ResourceNotFoundError):
        client.get("rg-aci", "nosuchgroup")


def test_container_group_never_shows_secrets(estate: Any) -> None:
    responses: list[Any] = []
    client = container_groups(raw_response_hook=lambda r: responses.append(r.http_response))
    secure = client.get("rg-aci", "secure-job", cls=raw_json)
    names = [v["name"] for v in secure["properties"]["containers"][0]["properties"]["environmentVariables"]]
    assert "DB_PASSWORD" in names
    assert not json_keys(secure) & SECRET_FIELDS
    stored = next(g for g in estate.admin.state()["containerGroups"] if g["id"].endswith("/secure-job"))
    assert stored["secureEnvironment"] is True  # the secret is there; the GET just does not show it

    spec = new_group(
        vid("a2"),
        image_registry_credentials=[
            aci.ImageRegistryCredential(server="contoso.azurecr.io", username="puller", password="s3cret")
        ],
        volumes=[
            aci.Volume(
                name="share",
                azure_file=aci.AzureFileVolume(
                    share_name="data", storage_account_name="contosodata", storage_account_key="a2V5"
                ),
            ),
            aci.Volume(name="creds", secret={"token": "c2VjcmV0"}),
        ],
    )
    client.begin_create_or_update("rg-aci", "with-secrets", spec, polling_interval=POLL).result()
    shown = client.get("rg-aci", "with-secrets", cls=raw_json)
    listed = list(client.list_by_resource_group("rg-aci")) + list(client.list())

    assert len(listed) == 8
    assert shown["properties"]["imageRegistryCredentials"][0]["username"] == "puller"
    assert shown["properties"]["volumes"][0]["azureFile"]["storageAccountName"] == "contosodata"
    bodies = [json.loads(r.text()) for r in responses if r.request.method in ("GET", "PUT")]
    resources = [b for b in bodies if "properties" in b or "value" in b]
    assert len(resources) >= 5  # GETs, the PUT's 201, the LRO's final GET, the lists
    for body in resources:
        assert not json_keys(body) & SECRET_FIELDS
        text = json.dumps(body)
        for secret in ("hunter2", "s3cret", "a2V5", "c2VjcmV0"):
            assert secret not in text


def test_container_group_recreate_with_new_key_version(estate: Any) -> None:
    client = container_groups()
    spec = client.get("rg-aci", "job1")
    spec.encryption_properties.key_version = vid("a2")

    with pytest.raises(HttpResponseError) as refused:
        client.begin_create_or_update("rg-aci", "job1", spec, polling_interval=POLL)
    assert refused.value.status_code == 409
    assert refused.value.error is not None
    assert refused.value.error.code == "ContainerGroupEncryptionUpdateNotSupported"
    assert client.get("rg-aci", "job1").encryption_properties.key_version == vid("a1")

    client.begin_delete("rg-aci", "job1", polling_interval=POLL).result()
    with pytest.raises(ResourceNotFoundError):
        client.get("rg-aci", "job1")
    created = client.begin_create_or_update("rg-aci", "job1", spec, polling_interval=POLL).result()

    assert created.encryption_properties.key_version == vid("a2")
    assert created.provisioning_state == "Succeeded"
    assert client.get("rg-aci", "job1").encryption_properties.key_version == vid("a2")
    methods = [(c["method"], c["status"]) for c in estate.writes("PUT") + estate.writes("DELETE")]
    assert sorted(methods) == sorted([("PUT", 409), ("DELETE", 202), ("PUT", 201)])


def test_container_group_keeps_what_the_emulator_does_not_model(estate: Any) -> None:
    """Fields the emulator has no rule for come back as they were sent: a client that drops
    one on a re-create is seen dropping it."""
    client = container_groups()
    group = new_group(
        vid("a2"),
        zones=["2"],
        extensions=[
            aci.DeploymentExtensionSpec(
                name="kube-proxy",
                extension_type="kube-proxy",
                version="1.0",
                settings={"clusterCidr": "10.240.0.0/16"},
                protected_settings={"kubeConfig": "c2VjcmV0"},
            )
        ],
        confidential_compute_properties=aci.ConfidentialComputeProperties(cce_policy="eyJhbGxvdyI6MX0="),
    )
    created = client.begin_create_or_update("rg-aci", "kept", group, polling_interval=POLL).result()
    again = client.get("rg-aci", "kept")
    for shown in (created, again):
        assert shown.zones == ["2"]
        assert [(e.name, e.extension_type, e.version, e.settings) for e in shown.extensions] == [
            ("kube-proxy", "kube-proxy", "1.0", {"clusterCidr": "10.240.0.0/16"})
        ]
        assert shown.extensions[0].protected_settings is None  # secret, as in Azure
        assert shown.confidential_compute_properties.cce_policy == "eyJhbGxvdyI6MX0="
    raw = estate.admin.state()["containerGroups"]
    [kept] = [g for g in raw if g["id"].endswith("/kept")]
    assert kept["zones"] == ["2"] and set(kept["properties"]) == {
        "extensions",
        "confidentialComputeProperties",
    }


def test_container_group_update_in_place_keeps_the_key_and_new_groups_check_it(estate: Any) -> None:
    client = container_groups()
    spec = client.get("rg-aci", "job2")
    spec.tags = {"touched": "yes"}
    updated = client.begin_create_or_update("rg-aci", "job2", spec, polling_interval=POLL).result()
    assert updated.tags == {"touched": "yes"}
    assert updated.encryption_properties.key_version == vid("a1")

    with pytest.raises(HttpResponseError) as disabled:
        client.begin_create_or_update(
            "rg-aci", "new-job", new_group(vid("a-disabled")), polling_interval=POLL
        )
    assert disabled.value.status_code == 400
    assert disabled.value.error and disabled.value.error.message is not None
    assert "is disabled" in disabled.value.error.message
    with pytest.raises(ResourceNotFoundError):
        client.get("rg-aci", "new-job")
    client.begin_create_or_update("rg-aci", "new-job", new_group(vid("a2")), polling_interval=POLL).result()
    assert client.get("rg-aci", "new-job").encryption_properties.key_version == vid("a2")


# -- ARM throttling -------------------------------------------------------------------------------
def drain_writes(group_name: str, name: str, workers: int = 8) -> tuple[int, list[Any]]:
    """PATCH from several SDK clients (retries off) until one is throttled: (accepted, 429 errors)."""
    stop = threading.Event()
    accepted: list[int] = []
    refusals: list[HttpResponseError] = []

    def work(worker: int) -> None:
        client = batch_accounts(retry_total=0)
        for n in range(100):
            if stop.is_set():
                return
            try:
                client.update(
                    group_name,
                    name,
                    batch_models.BatchAccountUpdateParameters(tags={"n": f"drain-{worker}-{n}"}),
                )
            except HttpResponseError as exc:
                if exc.status_code == 429:
                    refusals.append(exc)
                    stop.set()
                    return
                raise
            accepted.append(1)

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(work, w) for w in range(workers)]:
            future.result()
    return len(accepted), refusals


def test_throttling_headers_and_429_when_the_write_bucket_is_drained(estate: Any) -> None:
    responses: list[Any] = []
    client = batch_accounts(retry_total=0, raw_response_hook=lambda r: responses.append(r.http_response))
    client.get("rg-batch", "batch1")  # throttling off: the budget is reported, and never runs out
    assert responses[-1].headers["x-ms-ratelimit-remaining-subscription-reads"] == "249"

    estate.admin.set_throttling(True)
    client.get("rg-batch", "batch1")
    assert responses[-1].headers["x-ms-ratelimit-remaining-subscription-reads"] == "249"
    tags = batch_models.BatchAccountUpdateParameters(tags={"n": "0"})
    client.update("rg-batch", "batch1", tags)
    assert responses[-1].headers["x-ms-ratelimit-remaining-subscription-writes"] == "199"

    # Drain the bucket (200 writes, refilling at 10 a second) from a few connections at once:
    # urllib3 keeps Nagle on for proxied connections, so a request with a body takes ~40 ms.
    accepted, refusals = drain_writes("rg-batch", "batch1")
    assert refusals, "the write bucket never ran dry"
    error = refusals[0]
    assert error.status_code == 429
    assert error.error.code == "SubscriptionRequestsThrottled"
    assert int(error.response.headers["Retry-After"]) >= 1
    assert error.response.headers["x-ms-ratelimit-remaining-subscription-writes"] == "0"
    assert 199 <= accepted < 800  # 200 in the bucket, one taken above, plus what refilled meanwhile
    assert estate.admin.throttling()["throttled"] >= 1
    # Buckets are per kind and per subscription.
    assert client.get("rg-batch", "batch1").tags["n"].startswith("drain-")
    assert int(responses[-1].headers["x-ms-ratelimit-remaining-subscription-reads"]) > 200
    other = BatchManagementClient(DefaultAzureCredential(), SUB_B, retry_total=0).batch_account
    with pytest.raises(ResourceNotFoundError):
        other.update("rg-batch", "batch1", tags)  # not throttled: the other subscription's bucket is full

    estate.admin.set_throttling(False)
    client.update("rg-batch", "batch1", tags)
    assert responses[-1].headers["x-ms-ratelimit-remaining-subscription-writes"] == "199"
