"""Issue 17 section 4 and issue 16 item 4, asserted on the parsed templates (pycep).

- The consumer role goes to named resource groups once any is given; subscription scope is
  then an explicit choice.
- Attaching a user-assigned identity (the redeploy policy) is granted only on the identities
  the container groups use, or on their resource groups: never with the consumer role.
- Managed HSM pools join ROTATION_ALLOWED_VAULTS; their local RBAC is a data-plane script.
- The app pins its Python worker in requirements.txt and narrows DefaultAzureCredential.
"""

from __future__ import annotations

import re

import pytest
from test_templates import (
    INFRA,
    REPO,
    app_settings,
    body,
    loop_of,
    main,
    module,
    ref,
    resources_of_type,
    role_of,
    variable,
)

HSM_SCRIPT = INFRA / "scripts" / "grant-hsm-role.sh"


# ---------------------------------------------------------------- consumer role scope
def test_consumer_role_defaults_to_the_resource_groups_once_any_is_given():
    default = main()["parameters"]["consumerSubscriptionScopes"]["default"]["operator"]
    assert default["type"] == "conditional"
    operands = default["operands"]
    assert operands["condition"] == {
        "function": {"type": "empty", "parameters": {"item_to_test": "consumerResourceGroupScopes"}}
    }
    # no groups: the searched subscriptions (as before); groups given: no subscription scope
    assert (operands["true_value"], operands["false_value"]) == ("rotationSubscriptionIds", [])
    declared = list(main()["parameters"])
    assert declared.index("consumerResourceGroupScopes") < declared.index("consumerSubscriptionScopes")


def test_identity_assign_is_never_part_of_a_consumer_scope_role():
    roles = module("custom-roles")
    arm = variable(roles, "armActions")["function"]["parameters"]
    assert "identityAssignActions" not in {ref(v) for v in arm.values()}
    for name in ("consumerSubscriptionAccess", "consumerResourceGroupAccess"):
        assert (
            ref(body(main()["modules"][name])["params"]["roleName"])
            == "roles.outputs.consumerOperatorRoleName"
        )


def test_identity_assign_is_granted_only_on_the_container_groups_identities():
    mod = main()["modules"]["identityAssignAccess"]
    array = loop_of(mod)["detail"]["array_name"]["operator"]
    assert array["type"] == "conditional"
    assert array["operands"] == {
        "condition": "redeploysGroups",
        "true_value": "containerGroupIdentityScopes",
        "false_value": [],
    }, "only with the redeploy policy"
    assert variable(main(), "redeploysGroups")["operator"]["operands"] == {
        "operand_1": "rotationContainerGroupPolicy",
        "operand_2": "redeploy",
    }
    params = body(mod)["params"]
    assert ref(params["roleName"]) == "roles.outputs.identityAssignerRoleName"
    assert main()["parameters"]["containerGroupIdentityScopes"]["default"] == []
    # the identities' subscriptions are assignable scopes of the custom roles
    ids = variable(main(), "identitySubscriptionIds")
    assert ref(ids["loop_type"]["detail"]["array_name"]) == "containerGroupIdentityScopes"
    union = variable(main(), "assignableSubscriptionIds")["function"]["parameters"]
    assert "identitySubscriptionIds" in {ref(v) for v in union.values()}

    access = module("identity-assign-access")
    assert access.get("globals", {}).get("scope", {}).get("value", "resourceGroup") == "resourceGroup"
    grants = resources_of_type(access, "Microsoft.Authorization/roleAssignments")
    assert set(grants) == {"firstOnIdentity", "secondOnIdentity", "onGroup"}
    for name in ("firstOnIdentity", "secondOnIdentity"):
        assert role_of(access, grants[name]) == "param:roleName"
        assert ref(body(grants[name])["scope"]) == "identities[i]", f"{name}: on the identity itself"
    identities = access["resources"]["identities"]
    assert identities["existing"] is True
    assert identities["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities"
    # the resource-group grant is the fallback when no identity is named, and only then
    on_group = loop_of(grants["onGroup"])["detail"]["array_name"]["operator"]["operands"]
    assert on_group == {"condition": "wholeGroup", "true_value": "principals", "false_value": []}
    assert variable(access, "wholeGroup") == {
        "function": {"type": "empty", "parameters": {"item_to_test": "identityNames"}}
    }


def test_large_example_names_the_redeployed_groups_identities():
    import json

    data = json.loads((INFRA / "params" / "large.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert data["rotationContainerGroupPolicy"]["value"] == "redeploy"
    scopes = data["containerGroupIdentityScopes"]["value"]
    assert scopes and all(s.get("identityNames") for s in scopes), "name the identities, not whole groups"
    for scope in scopes:
        assert set(scope) <= {"subscriptionId", "resourceGroup", "identityNames"}


# ---------------------------------------------------------------- Managed HSM
def test_managed_hsm_pools_join_the_allowed_vaults():
    assert main()["parameters"]["managedHsms"]["default"] == []
    hosts = variable(main(), "hsmHosts")
    assert ref(hosts["loop_type"]["detail"]["array_name"]) == "managedHsms"
    assert ".managedhsm." in hosts["config"]
    allowed = body(main()["modules"]["functionApp"])["params"]["allowedVaults"]["function"]
    assert allowed["type"] == "join"
    joined = allowed["parameters"]["input_array"]["function"]
    assert joined["type"] == "concat"
    assert [ref(v) for v in joined["parameters"].values()] == ["vaultHosts", "hsmHosts"]


def test_hsm_role_script_grants_a_narrow_custom_role_at_keys_scope():
    text = HSM_SCRIPT.read_text(encoding="utf-8")
    actions = set(re.findall(r"Microsoft\.KeyVault/managedHsm/[A-Za-z/]+", text))
    assert actions == {
        "Microsoft.KeyVault/managedHsm/keys/read/action",
        "Microsoft.KeyVault/managedHsm/keys/write/action",
        "Microsoft.KeyVault/managedHsm/keys/rotate/action",
    }
    for broad in ("Managed HSM Crypto User", "Managed HSM Crypto Officer", "Managed HSM Administrator"):
        assert f'"{broad}"' not in text, f"the script must not assign {broad}"
    assert "--scope /keys" in text
    assert "az keyvault role definition create" in text and "az keyvault role assignment create" in text


# ---------------------------------------------------------------- worker and credential
def test_the_worker_is_pinned_in_the_app_requirements_not_only_in_dev():
    def pins(path):
        lines = (REPO / path).read_text(encoding="utf-8").splitlines()
        return {
            m.group(1).lower(): m.group(2)
            for line in lines
            if (m := re.match(r"\s*([A-Za-z0-9_.-]+)==([^\s#;]+)", line))
        }

    runtime, dev, constraints = (
        pins("requirements.txt"),
        pins("requirements-dev.txt"),
        pins("constraints.txt"),
    )
    assert "azure-functions-runtime" in runtime, "Azure picks the 3.13 worker from the app's requirements"
    marker = 'azure-functions-runtime==1.3.0; python_version >= "3.13"'
    assert (
        marker.replace("1.3.0", runtime["azure-functions-runtime"]) in (REPO / "requirements.txt").read_text()
    ), "the 3.13+ worker installs only on 3.13+ (Flex Consumption runs 3.12: the platform's worker)"
    assert "azure-functions-runtime" not in dev, "one pin, in requirements.txt (dev includes it with -r)"
    assert runtime["azure-functions-runtime"] == constraints["azure-functions-runtime"]
    from importlib.metadata import version

    assert version("azure-functions-runtime") == runtime["azure-functions-runtime"], (
        "the worker the indexer tests load is the one Azure runs"
    )


def test_default_azure_credential_is_narrowed_to_production_credentials(monkeypatch):
    value = app_settings()["AZURE_TOKEN_CREDENTIALS"]
    assert value == "prod"
    identity = pytest.importorskip("azure.identity")
    for name in ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", value)
    chain = {type(c).__name__ for c in identity.DefaultAzureCredential().credentials}
    assert chain, "the pinned azure-identity accepts the deployed value"
    developer = {
        "AzureCliCredential",
        "AzurePowerShellCredential",
        "AzureDeveloperCliCredential",
        "VisualStudioCodeCredential",
        "SharedTokenCacheCredential",
    }
    assert not chain & developer, f"developer credentials left in the chain: {chain & developer}"
    assert "ManagedIdentityCredential" in chain


# ---------------------------------------------------------------- activity log (issue 26 item 5)
def test_the_consumer_role_may_read_the_activity_log_the_revert_check_reads():
    """Without it every revert is recorded "changed by: unknown (activity log not readable: 403)"."""
    from rotation.azure.activitylog import READ_ACTION

    assert READ_ACTION in variable(module("custom-roles"), "consumerActions")
    assert READ_ACTION.endswith("/read"), "the revert check only reads the activity log"


def test_identity_assign_for_data_factory_is_granted_only_on_the_factories_identities():
    """The factory PUT repeats its user-assigned identity (ARM's linked check asks for assign on
    it): the identity-assigner role on the identities named, whatever the container-group policy."""
    mod = main()["modules"]["factoryIdentityAssignAccess"]
    assert ref(loop_of(mod)["detail"]["array_name"]) == "dataFactoryIdentityScopes"
    assert ref(body(mod)["params"]["roleName"]) == "roles.outputs.identityAssignerRoleName"
    assert main()["parameters"]["dataFactoryIdentityScopes"]["default"] == []
    ids = variable(main(), "factoryIdentitySubscriptionIds")
    assert ref(ids["loop_type"]["detail"]["array_name"]) == "dataFactoryIdentityScopes"
    union = variable(main(), "assignableSubscriptionIds")["function"]["parameters"]
    assert "factoryIdentitySubscriptionIds" in {ref(v) for v in union.values()}
