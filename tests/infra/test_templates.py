"""Offline checks of the Bicep templates in infra/ (no Bicep CLI, no Azure).

The templates are parsed with pycep (PyPI `pycep-parser`) and the properties that
matter are asserted on the parsed tree: the Key Vault events each subscription
filters, dead-lettering with the topic identity, retries, least-privilege roles
(no Owner, Contributor, User Access Administrator, Key Vault Crypto Officer; custom
roles holding exactly the actions the product uses), storage hardening, and every
setting and storage name of DESIGN.md section 7 wired to the Function App.

pycep gives an expression as a small tree and a bare identifier as a plain string;
`ref()` flattens the trees the templates use into dotted text ("storage.outputs.x").
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
from pycep import BicepParser  # PyPI: pycep-parser (requirements-dev.txt)

from rotation.azure.activitylog import READ_ACTION as ACTIVITY_LOG_READ
from rotation.azure.kinds import all_kinds
from rotation.azure.kinds.containergroup import ContainerGroups

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MODULES = INFRA / "modules"
DESIGN = REPO.parent / "shared" / "DESIGN.md"
CONFIG = REPO / "rotation" / "config.py"

# ---------------------------------------------------------------- expectations
EVENT_TYPES = {
    "Microsoft.KeyVault.KeyNearExpiry",
    "Microsoft.KeyVault.KeyNewVersionCreated",
    "Microsoft.KeyVault.KeyExpired",
}

QUEUES = ["rotation-requests", "rotation-requests-poison"]
TABLES = ["RotationRuns", "RotationAudit", "RotationLedger"]
CONTAINERS = ["eventgrid-deadletters", "rotation-poison", "rotation-redeploy", "audit-anchors"]
# Containers the product uses beyond DESIGN.md section 7 (issue 13: the daily rotation-age report).
PRODUCT_CONTAINERS = ["rotation-reports"]

# setting -> (function-app.bicep parameter, main.bicep parameter, DESIGN.md default)
OPTIONAL_SETTINGS = {
    "ROTATION_CLOUD": ("cloud", "rotationCloud", "AzurePublicCloud"),
    "ROTATION_ARM_ENDPOINT": ("armEndpoint", "rotationArmEndpoint", ""),
    # auto, not DESIGN.md's 16: a fixed width was the artificial cap of issue 15
    "ROTATION_CONCURRENCY": ("concurrency", "rotationConcurrency", "auto"),
    "ROTATION_DISCOVERY": ("discovery", "rotationDiscovery", "auto"),
    # not in DESIGN.md section 7 (stop 26): the hub, opt-in
    "ROTATION_EXECUTION": ("execution", "rotationExecution", "hub"),
    "ROTATION_TIME_BUDGET_SECONDS": ("timeBudgetSeconds", "rotationTimeBudgetSeconds", 600),
    "ROTATION_MAX_RETRY_AFTER_SECONDS": ("maxRetryAfterSeconds", "rotationMaxRetryAfterSeconds", "60"),
    "ROTATION_MAX_RESPONSE_BYTES": ("maxResponseBytes", "rotationMaxResponseBytes", 33554432),
    "ROTATION_CONTAINER_GROUP_POLICY": ("containerGroupPolicy", "rotationContainerGroupPolicy", "report"),
    "ROTATION_OPT_OUT_TAG": ("optOutTag", "rotationOptOutTag", "cmk-rotation"),
    "ROTATION_NEW_VERSION_EXPIRY_DAYS": ("newVersionExpiryDays", "rotationNewVersionExpiryDays", 365),
    "ROTATION_EXPIRY_WINDOW_DAYS": ("expiryWindowDays", "rotationExpiryWindowDays", 30),
    "ROTATION_SWEEP_SCHEDULE": ("sweepSchedule", "rotationSweepSchedule", "0 0 * * * *"),
    "ROTATION_DEFER_TO_KEY_POLICY": ("deferToKeyPolicy", "rotationDeferToKeyPolicy", True),
    "ROTATION_OUTCOME_TOPIC_ENDPOINT": ("outcomeTopicEndpoint", "rotationOutcomeTopicEndpoint", ""),
    "ROTATION_REVERT_GUARD_DAYS": ("revertGuardDays", "rotationRevertGuardDays", 30),
    "ROTATION_SHARD_THRESHOLD": ("shardThreshold", "rotationShardThreshold", 2000),
    # tuning settings (not in DESIGN.md section 7): deployed so a redeploy keeps them
    "ROTATION_POLL_INTERVAL_SECONDS": ("pollIntervalSeconds", "rotationPollIntervalSeconds", "5"),
    "ROTATION_RETRY_INITIAL_SECONDS": ("retryInitialSeconds", "rotationRetryInitialSeconds", "1"),
    "ROTATION_RETRY_MAX_SECONDS": ("retryMaxSeconds", "rotationRetryMaxSeconds", "30"),
    "ROTATION_RETRY_ATTEMPTS": ("retryAttempts", "rotationRetryAttempts", 6),
    "ROTATION_LEASE_SECONDS": ("leaseSeconds", "rotationLeaseSeconds", 60),
    # canary waves and the daily rotation-age report (issue 13; not in DESIGN.md section 7)
    "ROTATION_WAVE_SOAK_MINUTES": ("waveSoakMinutes", "rotationWaveSoakMinutes", 0),
    "ROTATION_WAVE_RECHECK_SECONDS": ("waveRecheckSeconds", "rotationWaveRecheckSeconds", 300),
    "ROTATION_REPORT_MAX_AGE_DAYS": ("reportMaxAgeDays", "rotationReportMaxAgeDays", 365),
}
# Settings outside DESIGN.md section 7 (the design check leaves them out).
TUNING_SETTINGS = {
    "ROTATION_POLL_INTERVAL_SECONDS",
    "ROTATION_RETRY_INITIAL_SECONDS",
    "ROTATION_RETRY_MAX_SECONDS",
    "ROTATION_RETRY_ATTEMPTS",
    "ROTATION_LEASE_SECONDS",
    "ROTATION_WAVE_SOAK_MINUTES",
    "ROTATION_WAVE_RECHECK_SECONDS",
    "ROTATION_REPORT_MAX_AGE_DAYS",
    "ROTATION_EXECUTION",
}
# DESIGN.md section 7 names these for features not built yet: no app setting is deployed for a
# knob that would do nothing. The test below fails once the product reads one (then deploy it).
NOT_BUILT_YET: dict[str, str] = {}
REQUIRED_SETTINGS = {
    "ROTATION_ALLOWED_VAULTS",
    "ROTATION_SUBSCRIPTIONS",
    "AZURE_CLIENT_ID",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
}

# Built-in roles that must never be granted (ids are the same in every tenant).
FORBIDDEN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
    "14b46e9e-c2b7-41b4-b07b-48a6ebf60603": "Key Vault Crypto Officer",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
}
# The only built-in roles the templates may grant, each for a stated reason.
ALLOWED_BUILTIN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner (Functions host storage)",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
    "8a0f0c08-91a1-4084-bc3d-661d67233fed": "Storage Queue Data Message Processor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "e147488a-f6f5-4113-8e2d-b22465e65bf6": "Key Vault Crypto Service Encryption User",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "EventGrid Data Sender",
}
BLOB_OWNER, BLOB_CONTRIBUTOR, BLOB_READER = (
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
)
QUEUE_CONTRIBUTOR, QUEUE_SENDER, QUEUE_PROCESSOR = (
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "8a0f0c08-91a1-4084-bc3d-661d67233fed",
)
TABLE_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"

KEY_VAULT_DATA_ACTIONS = [
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/keys/rotate/action",
    "Microsoft.KeyVault/vaults/keys/update/action",
    "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
]
# Actions a kind needs that the published operations list does not name (infra/README.md, "Where
# each action name comes from"): ARM refuses a role naming an action its provider does not
# register, so these are granted only when the deployment asks for them (`hdInsightRotation`).
HDINSIGHT_ROTATE_ACTIONS = [
    "Microsoft.HDInsight/clusters/rotatediskencryptionkey/action",
    "Microsoft.HDInsight/clusters/operationresults/read",
]
# Every other action each registered kind declares it needs (its `arm_actions`), in the
# registry's order: a kind added without its actions in the role, or an action left behind,
# fails here. Then what the product reads beyond the kinds: the activity log, for consumer-reverted.
KIND_ACTIONS = [action for kind in all_kinds() for action in kind.arm_actions]
CONSUMER_ACTIONS = [a for a in KIND_ACTIONS if a not in HDINSIGHT_ROTATE_ACTIONS] + [ACTIVITY_LOG_READ]
# Kinds this system sees but never writes (manual-required): read only, nothing else.
READ_ONLY_PROVIDERS = ("Microsoft.DocumentDB/", "Microsoft.ContainerService/")
REDEPLOY_ACTIONS = list(ContainerGroups.redeploy_actions)
# The published operations list names the action ARM's linked check asks for (identity.md:
# "RBAC action for assigning an existing user assigned identity to a resource").
IDENTITY_ASSIGN_ACTIONS = ["Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"]
ANCHOR_WRITER_DATA_ACTIONS = [
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
]
VNET_ACTIONS = list(ContainerGroups.subnet_actions)
ACCESS_POLICY_ROTATOR = ["get", "list", "rotate", "update", "getrotationpolicy"]
ACCESS_POLICY_CONSUMER = ["get", "wrapKey", "unwrapKey"]


# ---------------------------------------------------------------- parsing helpers
@cache
def _parser():
    return BicepParser()


@cache
def parse(path: Path) -> dict:
    return _parser().parse(file_path=path)


def main() -> dict:
    return parse(INFRA / "main.bicep")


def module(name: str) -> dict:
    return parse(MODULES / f"{name}.bicep")


def all_templates() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def body(declaration: dict) -> dict:
    """The object of a resource or module, under any loop or condition."""
    config = declaration["config"]
    while isinstance(config, dict) and ("loop_type" in config or "condition" in config):
        config = config["config"]
    return config


def loop_of(declaration: dict) -> dict:
    """The `for` of a looped resource or module (every caller expects one)."""
    loop = declaration["config"].get("loop_type")
    assert loop is not None, "not a loop"
    return loop


def condition_of(declaration: dict):
    return declaration["config"].get("condition")


def ref(expr) -> str:
    """Flatten identifiers, property and index access into text: a.b[0].c."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, (int, bool)) or expr is None:
        return json.dumps(expr)
    if isinstance(expr, dict) and "operator" in expr:
        op = expr["operator"]
        a, b = op["operands"].get("operand_1"), op["operands"].get("operand_2")
        if op["type"] == "property_accessor":
            return f"{ref(a)}.{ref(b)}"
        if op["type"] == "index_accessor":
            return f"{ref(a)}[{ref(b)}]"
    return json.dumps(expr, sort_keys=True)


def variable(template: dict, name: str):
    return template["variables"][name]["value"]


def resources_of_type(template: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in template.get("resources", {}).items() if v["type"] == rtype}


def role_of(template: dict, assignment: dict) -> str:
    """The role GUID (via a variable) or the parameter name that carries it."""
    (role,) = set(roles_of(template, assignment))
    return role


def roles_of(template: dict, assignment: dict) -> list[str]:
    """Every role an assignment can grant: one, or one per item when the role is a field
    of the loop's items (`for grant in table: ... grant.role`)."""
    role_id = body(assignment)["properties"]["roleDefinitionId"]
    fn = role_id["function"]
    assert fn["type"] == "subscription_resource_id", (
        f"role id not built with subscriptionResourceId: {role_id}"
    )
    assert fn["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    name = fn["parameters"]["resource_name_1"]
    if isinstance(name, str):
        return [_role_name(template, name)]
    _, _, field = ref(name).partition(".")
    table = loop_of(assignment)["detail"]["array_name"]
    assert table in template.get("variables", {}), f"role {ref(name)!r} is not a field of a table variable"
    return [_role_name(template, entry[field]) for entry in variable(template, table)]


def _role_name(template: dict, name: str) -> str:
    if name in template.get("variables", {}):
        return variable(template, name)
    assert name in template["parameters"], f"role {name!r} is neither a variable nor a parameter"
    return f"param:{name}"


def app_settings() -> dict[str, object]:
    site = body(module("function-app")["resources"]["site"])
    settings = site["properties"]["siteConfig"]["appSettings"]
    names = [s["name"] for s in settings]
    assert len(names) == len(set(names)), f"duplicate app settings: {names}"
    return {s["name"]: s["value"] for s in settings}


def design_section_7() -> str | None:
    if not DESIGN.exists():
        return None
    text = DESIGN.read_text(encoding="utf-8")
    start = text.index("## 7. Contracts")
    return text[start:]


# ---------------------------------------------------------------- parse everything
@pytest.mark.parametrize("path", all_templates(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_template_parses(path):
    tree = parse(path)
    assert tree.get("resources") or tree.get("modules"), f"{path} declares nothing"


def test_every_module_is_used_by_main():
    used = {Path(m["detail"]["path"]).name for m in main()["modules"].values()}
    on_disk = {p.name for p in MODULES.glob("*.bicep")}
    assert on_disk == used, f"modules not wired into main.bicep: {on_disk - used}; missing: {used - on_disk}"


# ---------------------------------------------------------------- Event Grid
def test_event_subscription_filters_exactly_the_three_key_events():
    subs = resources_of_type(
        module("vault-event-subscription"), "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    )
    assert len(subs) == 1
    props = body(next(iter(subs.values())))["properties"]
    types = props["filter"]["includedEventTypes"]
    assert sorted(types) == sorted(EVENT_TYPES), types
    assert props["eventDeliverySchema"] == "EventGridSchema"
    dest = props["destination"]
    assert dest["endpointType"] == "AzureFunction"
    assert dest["properties"]["resourceId"] == "${functionAppId}/functions/on_key_event"
    assert dest["properties"]["maxEventsPerBatch"] == 1


def test_every_vault_gets_a_topic_and_a_subscription_in_pass_two():
    mods = main()["modules"]
    topics, subs = mods["vaultTopics"], mods["vaultEventSubscriptions"]
    assert loop_of(topics)["detail"]["array_name"] == "vaults"
    # Pass 2 only: the loop runs over every vault when deployEventSubscriptions, else none.
    arr = loop_of(subs)["detail"]["array_name"]["operator"]
    assert arr["type"] == "conditional"
    assert arr["operands"] == {
        "condition": "deployEventSubscriptions",
        "true_value": "vaults",
        "false_value": [],
    }
    assert main()["parameters"]["deployEventSubscriptions"]["default"] is False
    params = body(subs)["params"]
    assert ref(params["functionAppId"]) == "functionApp.outputs.functionAppId"
    assert ref(params["systemTopicName"]) == "vaultTopics[i].outputs.systemTopicName"
    assert body(subs)["dependsOn"] == ["deadLetterAccess"], "subscriptions must wait for the dead-letter role"


def test_topic_is_a_key_vault_system_topic_with_its_own_identity():
    topic = body(module("vault-topic")["resources"]["topic"])
    assert topic["properties"]["topicType"] == "Microsoft.KeyVault.vaults"
    assert ref(topic["properties"]["source"]) == "vault.id"
    assert topic["identity"]["type"] == "SystemAssigned"


def test_dead_letters_go_to_the_dead_letter_container_with_the_topic_identity():
    props = body(module("vault-event-subscription")["resources"]["eventSubscription"])["properties"]
    assert "deadLetterDestination" not in props, (
        "dead-lettering must use the topic identity, not a key or SAS"
    )
    dl = props["deadLetterWithResourceIdentity"]
    assert dl["identity"]["type"] == "SystemAssigned"
    assert dl["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert dl["deadLetterDestination"]["properties"] == {
        "resourceId": "deadLetterStorageAccountId",
        "blobContainerName": "deadLetterContainerName",
    }
    params = body(main()["modules"]["vaultEventSubscriptions"])["params"]
    assert ref(params["deadLetterContainerName"]) == "storage.outputs.deadLetterContainerName"
    assert ref(params["deadLetterStorageAccountId"]) == "storage.outputs.storageAccountId"
    storage = module("storage")
    assert storage["outputs"]["deadLetterContainerName"]["value"] == "deadLetterContainerName"
    assert variable(storage, "deadLetterContainerName") == "eventgrid-deadletters"


def test_topic_identity_may_write_only_into_the_dead_letter_container():
    access = module("deadletter-access")
    (assignment,) = resources_of_type(access, "Microsoft.Authorization/roleAssignments").values()
    assert role_of(access, assignment) == BLOB_CONTRIBUTOR
    assert body(assignment)["scope"] == "container"
    container = body(access["resources"]["container"])
    assert access["resources"]["container"]["existing"] is True
    assert container["name"] == "containerName"
    assert ref(loop_of(assignment)["detail"]["array_name"]) == "topicPrincipalIds"
    params = body(main()["modules"]["deadLetterAccess"])["params"]
    assert ref(params["containerName"]) == "storage.outputs.deadLetterContainerName"
    principals = params["topicPrincipalIds"]
    assert ref(principals["loop_type"]["detail"]["array_name"]) == "vaults"
    assert ref(principals["config"]) == "vaultTopics[i].outputs.principalId"


def test_retry_policy_is_set_within_event_grid_limits():
    sub_module = module("vault-event-subscription")
    retry = body(sub_module["resources"]["eventSubscription"])["properties"]["retryPolicy"]
    assert retry == {
        "maxDeliveryAttempts": "maxDeliveryAttempts",
        "eventTimeToLiveInMinutes": "eventTimeToLiveInMinutes",
    }
    params = main()["parameters"]
    attempts, ttl = params["maxDeliveryAttempts"]["default"], params["eventTimeToLiveInMinutes"]["default"]
    assert 1 < attempts <= 30
    assert 1 <= ttl <= 1440
    passed = body(main()["modules"]["vaultEventSubscriptions"])["params"]
    assert passed["maxDeliveryAttempts"] == "maxDeliveryAttempts"
    assert passed["eventTimeToLiveInMinutes"] == "eventTimeToLiveInMinutes"


def test_dead_letters_are_kept_for_on_call_then_expire():
    storage = module("storage")
    rule = body(storage["resources"]["lifecycle"])["properties"]["policy"]["rules"][0]
    assert rule["definition"]["filters"]["prefixMatch"] == ["${deadLetterContainerName}/"]
    delete = rule["definition"]["actions"]["baseBlob"]["delete"]
    assert delete == {"daysAfterModificationGreaterThan": "deadLetterRetentionDays"}
    assert (
        ref(body(main()["modules"]["storage"])["params"]["deadLetterRetentionDays"])
        == "deadLetterRetentionDays"
    )
    assert main()["parameters"]["deadLetterRetentionDays"]["default"] >= 14


def test_rotation_age_reports_are_kept_for_the_retention_then_expire():
    storage = module("storage")
    rules = body(storage["resources"]["lifecycle"])["properties"]["policy"]["rules"]
    (rule,) = [r for r in rules if r["name"] == "expire-rotation-age-reports"]
    # Only the report blobs (estate/report.py's blob_name), never anything else in the account.
    assert rule["definition"]["filters"]["prefixMatch"] == ["${reportsContainerName}/rotation-age/"]
    assert variable(storage, "reportsContainerName") == "rotation-reports"
    delete = rule["definition"]["actions"]["baseBlob"]["delete"]
    assert delete == {"daysAfterModificationGreaterThan": "reportRetentionDays"}
    assert ref(body(main()["modules"]["storage"])["params"]["reportRetentionDays"]) == "reportRetentionDays"
    declared = main()["parameters"]["reportRetentionDays"]
    assert declared["default"] == 400
    bounds = {d["type"]: d["argument"] for d in declared["decorators"]}
    assert bounds["min_value"] >= 30  # a month of evidence at least


# ---------------------------------------------------------------- roles
def _all_role_assignments():
    for path in all_templates():
        tree = parse(path)
        for name, res in resources_of_type(tree, "Microsoft.Authorization/roleAssignments").items():
            yield path, tree, name, res


def test_no_broad_role_id_appears_anywhere_in_infra():
    for path in [*all_templates(), *INFRA.rglob("*.json")]:
        text = path.read_text(encoding="utf-8").lower()
        for role_id, role in FORBIDDEN_ROLES.items():
            assert role_id not in text, f"{path.relative_to(REPO)} mentions {role}"


def test_role_assignments_use_only_the_expected_roles():
    seen = set()
    grants = [
        (path, name, res, role)
        for path, tree, name, res in _all_role_assignments()
        for role in roles_of(tree, res)
    ]
    for path, name, res, role in grants:
        where = f"{path.name}:{name}"
        assert role not in FORBIDDEN_ROLES, f"{where} grants {FORBIDDEN_ROLES[role]}"
        if role.startswith("param:"):
            # Custom roles arrive as a parameter; main.bicep must feed it from custom-roles.bicep.
            seen.add(role)
            continue
        assert role in ALLOWED_BUILTIN_ROLES, f"{where} grants an unexpected role {role}"
        seen.add(role)
        # principalType is set (no lookup delay on new identities); p.principalType comes
        # from main.bicep's `rotators`, whose entries say ServicePrincipal or Group.
        assert ref(body(res)["properties"]["principalType"]) in {
            "ServicePrincipal",
            "Group",
            "p.principalType",
            "principals[0].principalType",
            '{"function": {"parameters": {"input": "principals"}, "type": "last"}}.principalType',
        }, where
    assert {"param:keyOperatorRoleName", "param:roleName"} <= seen
    rotators = variable(main(), "rotators")["function"]["parameters"]
    entries = [*rotators["arg_1"], *rotators["arg_2"]["operator"]["operands"]["true_value"]]
    assert [e["principalType"] for e in entries] == ["ServicePrincipal", "Group"]


def test_custom_role_parameters_come_from_the_custom_roles_module():
    mods = main()["modules"]
    assert (
        ref(body(mods["vaultAccess"])["params"]["keyOperatorRoleName"]) == "roles.outputs.keyOperatorRoleName"
    )
    for name in ("consumerSubscriptionAccess", "consumerResourceGroupAccess"):
        assert ref(body(mods[name])["params"]["roleName"]) == "roles.outputs.consumerOperatorRoleName", name
    roles = module("custom-roles")
    assert ref(roles["outputs"]["keyOperatorRoleName"]["value"]) == "keyOperator.name"
    assert ref(roles["outputs"]["consumerOperatorRoleName"]["value"]) == "consumerOperator.name"


def test_nothing_at_subscription_scope_but_the_consumer_custom_role():
    for path in all_templates():
        tree = parse(path)
        if tree.get("globals", {}).get("scope", {}).get("value") != "subscription":
            continue
        for name, res in resources_of_type(tree, "Microsoft.Authorization/roleAssignments").items():
            assert role_of(tree, res) == "param:roleName", f"{path.name}:{name}"
    sub_access = body(main()["modules"]["consumerSubscriptionAccess"])
    assert ref(sub_access["scope"]) != "subscription()"
    assert ref(sub_access["params"]["roleName"]) == "roles.outputs.consumerOperatorRoleName"


def test_custom_roles_hold_exactly_the_actions_the_product_uses():
    roles = module("custom-roles")
    assert variable(roles, "keyVaultDataActions") == KEY_VAULT_DATA_ACTIONS
    assert variable(roles, "consumerActions") == CONSUMER_ACTIONS
    assert variable(roles, "containerGroupRedeployActions") == REDEPLOY_ACTIONS
    assert variable(roles, "containerGroupVnetActions") == VNET_ACTIONS
    combined = variable(roles, "armActions")["function"]
    assert combined["type"] == "concat"
    parts = combined["parameters"]
    assert parts["arg_1"] == "consumerActions"
    redeploy = parts["arg_3"]["operator"]["operands"]
    assert redeploy == {
        "condition": "redeploy",
        "true_value": "containerGroupRedeployActions",
        "false_value": [],
    }
    vnet = parts["arg_4"]["operator"]["operands"]
    assert vnet["true_value"] == "containerGroupVnetActions"
    assert vnet["false_value"] == []
    assert variable(roles, "redeploy")["operator"]["operands"] == {
        "operand_1": "containerGroupPolicy",
        "operand_2": "redeploy",
    }

    (key_perm,) = body(roles["resources"]["keyOperator"])["properties"]["permissions"]
    assert key_perm == {
        "actions": [],
        "notActions": [],
        "dataActions": "keyVaultDataActions",
        "notDataActions": [],
    }
    (arm_perm,) = body(roles["resources"]["consumerOperator"])["properties"]["permissions"]
    assert arm_perm == {"actions": "armActions", "notActions": [], "dataActions": [], "notDataActions": []}

    assert variable(roles, "identityAssignActions") == IDENTITY_ASSIGN_ACTIONS
    (assign_perm,) = body(roles["resources"]["identityAssigner"])["properties"]["permissions"]
    assert assign_perm["actions"] == "identityAssignActions" and assign_perm["dataActions"] == []
    assert not any("ManagedIdentity" in a for a in [*CONSUMER_ACTIONS, *REDEPLOY_ACTIONS]), (
        "assign on identities is its own role, granted only on the identities concerned"
    )
    for action in CONSUMER_ACTIONS:
        if action.startswith(READ_ONLY_PROVIDERS):
            assert action.endswith("/read"), f"{action}: this kind is never written"
    every = [*KEY_VAULT_DATA_ACTIONS, *CONSUMER_ACTIONS, *HDINSIGHT_ROTATE_ACTIONS, *REDEPLOY_ACTIONS]
    for action in [*every, *VNET_ACTIONS, *IDENTITY_ASSIGN_ACTIONS, *ANCHOR_WRITER_DATA_ACTIONS]:
        assert "*" not in action, f"{action}: a wildcard where Azure names the action itself"
    for forbidden in ("delete", "purge", "create", "import", "backup", "restore", "wrap", "sign"):
        assert not any(forbidden in a.lower() for a in KEY_VAULT_DATA_ACTIONS), forbidden
    # Report mode (the default) leaves container groups read-only.
    assert not any(
        a.startswith("Microsoft.ContainerInstance/containerGroups/") and not a.endswith("/read")
        for a in CONSUMER_ACTIONS
    )


def test_hdinsight_rotation_is_granted_only_when_the_deployment_asks_for_it():
    roles = module("custom-roles")
    assert variable(roles, "hdInsightRotateActions") == HDINSIGHT_ROTATE_ACTIONS
    assert set(HDINSIGHT_ROTATE_ACTIONS) <= set(KIND_ACTIONS), "the hdinsight kind still needs them"
    assert "Microsoft.HDInsight/clusters/read" in CONSUMER_ACTIONS  # discovery and plans see clusters
    gated = variable(roles, "armActions")["function"]["parameters"]["arg_2"]["operator"]["operands"]
    assert gated == {
        "condition": "hdInsightRotation",
        "true_value": "hdInsightRotateActions",
        "false_value": [],
    }
    declared = main()["parameters"]["hdInsightRotation"]
    assert declared["default"] is False, "off unless asked for: the role must deploy without them"
    assert ref(body(main()["modules"]["roles"])["params"]["hdInsightRotation"]) == "hdInsightRotation"


def test_custom_roles_are_assignable_where_they_are_assigned():
    roles = module("custom-roles")
    assert roles["globals"]["scope"]["value"] == "subscription"
    for name in ("keyOperator", "consumerOperator"):
        assert body(roles["resources"][name])["properties"]["assignableScopes"] == "assignableScopes"
    union = variable(main(), "assignableSubscriptionIds")["function"]
    assert union["type"] == "union"
    sources = {ref(v) for v in union["parameters"].values()}
    for needed in (
        "rotationSubscriptionIds",
        "consumerSubscriptionScopes",
        "consumerGroupSubscriptionIds",
        "vaultSubscriptionIds",
    ):
        assert needed in sources, needed


def test_vault_access_rbac_and_access_policy_modes():
    vault = module("vault-access")
    rotators = vault["resources"]["rotatorGrants"]
    assert role_of(vault, rotators) == "param:keyOperatorRoleName"
    assert body(rotators)["scope"] == "vault"
    consumers = vault["resources"]["consumerGrants"]
    assert role_of(vault, consumers) == "e147488a-f6f5-4113-8e2d-b22465e65bf6"
    assert ref(body(consumers)["scope"]) == "consumerKeys[i]", (
        "consumer identities get one key, not the vault"
    )
    assert variable(vault, "rotatorKeyPermissions") == ACCESS_POLICY_ROTATOR
    assert variable(vault, "consumerKeyPermissions") == ACCESS_POLICY_CONSUMER
    policies = vault["resources"]["accessPolicies"]
    assert body(policies)["name"] == "add"
    assert condition_of(policies) == {"operator": {"type": "not", "operands": {"bool_value": "useRbac"}}}
    for name in ("rotatorPolicies", "consumerPolicies"):
        perms = variable(vault, name)["config"]["permissions"]
        assert set(perms) == {"keys"}, f"{name} must grant key permissions only"


def _container_names(storage: dict) -> list[str]:
    return [
        variable(storage, n) if n in storage["variables"] else n for n in variable(storage, "containerNames")
    ]


def _function_grants(storage: dict) -> set[tuple[str, str]]:
    """(scope, role) of every assignment to the function identity; a container scope is named."""
    names = _container_names(storage)
    grants = set()
    for res in resources_of_type(storage, "Microsoft.Authorization/roleAssignments").values():
        if body(res)["properties"]["principalId"] != "functionPrincipalId":
            continue
        scope = ref(body(res)["scope"])
        if scope == "containers[grant.index]":  # the per-container table
            for entry in variable(storage, loop_of(res)["detail"]["array_name"]):
                grants.add((names[entry["index"]], _role_name(storage, entry["role"])))
            continue
        match = re.fullmatch(r"containers\[(\d+)\]", scope)
        grants.add((names[int(match.group(1))] if match else scope, role_of(storage, res)))
    return grants


def test_function_identity_blob_roles_stop_at_the_containers_it_uses():
    """Issue 17 section 4: no blob role on the whole account; create-only on audit-anchors."""
    assert _function_grants(module("storage")) == {
        ("storage", QUEUE_CONTRIBUTOR),
        ("storage", TABLE_CONTRIBUTOR),
        ("eventgrid-deadletters", BLOB_READER),  # Event Grid writes them; replay only reads
        ("rotation-poison", BLOB_CONTRIBUTOR),
        ("rotation-redeploy", BLOB_CONTRIBUTOR),
        ("audit-anchors", "param:anchorWriterRoleName"),
        ("function-deployment", BLOB_CONTRIBUTOR),  # the Flex package, written through the app
        ("azure-webjobs-hosts", BLOB_CONTRIBUTOR),  # the host: timer schedule, locks
        ("azure-webjobs-secrets", BLOB_CONTRIBUTOR),  # the host: function keys
        ("rotation-reports", BLOB_CONTRIBUTOR),  # the sweep's daily rotation-age report
    }
    assert ref(body(main()["modules"]["storage"])["params"]["anchorWriterRoleName"]) == (
        "roles.outputs.anchorWriterRoleName"
    )


def test_anchor_writer_can_create_but_not_overwrite_or_delete():
    roles = module("custom-roles")
    assert variable(roles, "anchorWriterDataActions") == ANCHOR_WRITER_DATA_ACTIONS
    (perm,) = body(roles["resources"]["anchorWriter"])["properties"]["permissions"]
    assert perm == {
        "actions": [],
        "notActions": [],
        "dataActions": "anchorWriterDataActions",
        "notDataActions": [],
    }
    assert not any(a.endswith(("/blobs/write", "/blobs/delete")) for a in ANCHOR_WRITER_DATA_ACTIONS)
    assert ref(roles["outputs"]["anchorWriterRoleName"]["value"]) == "anchorWriter.name"
    # and nobody gets a broader blob role there: the operators read it only
    storage = module("storage")
    index = _container_names(storage).index("audit-anchors")
    on_anchors = [
        res
        for res in resources_of_type(storage, "Microsoft.Authorization/roleAssignments").values()
        if ref(body(res)["scope"]) == f"containers[{index}]"
    ]
    grants = {
        (
            body(r)["properties"]["principalId"],
            role_of(storage, r),
            json.dumps(condition_of(r), sort_keys=True),
        )
        for r in on_anchors
    }
    reads, creates = (
        json.dumps(
            {"operator": {"type": "and", "operands": {"operand_1": "hasOperators", "operand_2": operand}}},
            sort_keys=True,
        )
        for operand in (
            {"operator": {"type": "not", "operands": {"bool_value": "operatorWritesAnchors"}}},
            "operatorWritesAnchors",
        )
    )
    assert grants == {
        ("functionPrincipalId", "param:anchorWriterRoleName", "null"),
        # people read; only when they run rotations in-process do their runs create anchors
        ("operatorGroupId", BLOB_READER, reads),
        ("operatorGroupId", "param:anchorWriterRoleName", creates),
    }
    passed = body(main()["modules"]["storage"])["params"]
    assert passed["operatorWritesAnchors"] == "operatorRotates"


def test_operator_group_gets_what_the_cli_and_replay_need_and_nothing_more():
    storage = module("storage")
    grants = set()
    for res in resources_of_type(storage, "Microsoft.Authorization/roleAssignments").values():
        props = body(res)["properties"]
        if props["principalId"] != "operatorGroupId":
            continue
        assert props["principalType"] == "Group"
        grants.add((ref(body(res)["scope"]), role_of(storage, res)))
    containers = variable(storage, "containerNames")
    index = {variable(storage, n) if n in storage["variables"] else n: i for i, n in enumerate(containers)}
    expected = {
        ("tables[i]", TABLE_CONTRIBUTOR),
        ("queues[i]", QUEUE_SENDER),
        ("queues[i]", QUEUE_PROCESSOR),
        (f"containers[{index['eventgrid-deadletters']}]", BLOB_READER),
        (f"containers[{index['rotation-poison']}]", BLOB_CONTRIBUTOR),
        (f"containers[{index['audit-anchors']}]", BLOB_READER),  # verify
        # in-process runs anchor their trail: create only, never overwrite or delete
        (f"containers[{index['audit-anchors']}]", "param:anchorWriterRoleName"),
        # every plan reads saved specs; writing them only with in-process redeploys
        (f"containers[{index['rotation-redeploy']}]", BLOB_READER),
        (f"containers[{index['rotation-redeploy']}]", BLOB_CONTRIBUTOR),
    }
    assert grants == expected
    redeploy_specs = condition_of(storage["resources"]["operatorRedeploySpecs"])["operator"]["operands"]
    assert redeploy_specs["operand_2"] == "operatorNeedsRedeploySpecs"
    read_only = condition_of(storage["resources"]["operatorRedeploySpecsRead"])["operator"]["operands"]
    assert "operatorNeedsRedeploySpecs" in str(read_only)  # reader exactly when not contributor
    for name in ("operatorTables", "operatorQueueSend", "operatorQueueProcess"):
        arr = loop_of(storage["resources"][name])["detail"]["array_name"]["operator"]["operands"]
        assert arr["condition"] == "hasOperators"
        assert arr["false_value"] == []
    # In-process rotate/replay: the same vault and ARM roles as the function, only if asked.
    rotators = variable(main(), "rotators")["function"]["parameters"]["arg_2"]["operator"]["operands"]
    assert rotators["condition"] == "operatorRotates"
    assert rotators["true_value"][0] == {"principalId": "operatorGroupId", "principalType": "Group"}


# ---------------------------------------------------------------- storage
def test_storage_account_is_hardened():
    props = body(module("storage")["resources"]["storage"])["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True
    container = body(module("storage")["resources"]["containers"])
    assert container["properties"]["publicAccess"] == "None"


def test_storage_names_match_design_section_7():
    storage = module("storage")
    assert variable(storage, "queueNames") == QUEUES
    assert variable(storage, "tableNames") == TABLES
    containers = [
        variable(storage, n) if n in storage["variables"] else n for n in variable(storage, "containerNames")
    ]
    assert containers[: len(CONTAINERS)] == CONTAINERS
    assert set(PRODUCT_CONTAINERS) <= set(containers)
    for loop_name, names in (
        ("queues", "queueNames"),
        ("tables", "tableNames"),
        ("containers", "containerNames"),
    ):
        assert loop_of(storage["resources"][loop_name])["detail"]["array_name"] == names
    # The names the product creates and uses (rotation/service.py) are the names deployed.
    from rotation import service

    assert set(QUEUES) == set(service.QUEUES)
    assert set(TABLES) == set(service.TABLES)
    assert set(service.containers()) == set(CONTAINERS) | set(PRODUCT_CONTAINERS)
    section = design_section_7()
    if section is not None:  # and, where the design is at hand, the names of its section 7
        storage_names = section[section.index("**Storage names.**") : section.index("**Queue message")]
        named = {n for n in re.findall(r"`([A-Za-z-]+)`", storage_names) if not n.isupper()}
        assert named == set(QUEUES) | set(TABLES) | set(CONTAINERS), named


def test_audit_anchors_are_immutable():
    storage = module("storage")
    policy = storage["resources"]["auditAnchorImmutability"]
    assert policy["type"] == "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies"
    parent = ref(body(policy)["parent"])
    match = re.fullmatch(r"containers\[(\d+)\]", parent)
    assert match, parent
    index = int(match.group(1))
    assert variable(storage, variable(storage, "containerNames")[index]) == "audit-anchors"
    props = body(policy)["properties"]
    assert props["immutabilityPeriodSinceCreationInDays"] == "auditAnchorImmutabilityDays"
    assert props["allowProtectedAppendWrites"] is False


# ---------------------------------------------------------------- the Function App
def test_every_design_setting_is_an_app_setting():
    settings = app_settings()
    missing = (REQUIRED_SETTINGS | set(OPTIONAL_SETTINGS)) - set(settings)
    assert not missing, f"app settings missing: {sorted(missing)}"
    section = design_section_7()
    if section is not None:
        table = section[section.index("**Settings**") : section.index("**HTTP**")]
        design_names = set(re.findall(r"^\| `([A-Za-z_]+)`", table, re.M)) - set(NOT_BUILT_YET)
        product = "\n".join(p.read_text() for p in (REPO / "rotation").rglob("*.py"))
        built = {name for name in NOT_BUILT_YET if name in product}
        assert not built, f"read by the product now: deploy them as app settings {sorted(built)}"
        assert design_names - {"AzureWebJobsStorage"} <= set(settings), design_names - set(settings)
        assert {n for n in design_names if n.startswith("ROTATION_")} == set(
            OPTIONAL_SETTINGS
        ) - TUNING_SETTINGS | {
            "ROTATION_ALLOWED_VAULTS",
            "ROTATION_SUBSCRIPTIONS",
        }


def test_host_storage_is_identity_based():
    settings = app_settings()
    assert "AzureWebJobsStorage" not in settings, "no connection string: identity-based settings only"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    for service in ("blob", "queue", "table"):
        assert settings[f"AzureWebJobsStorage__{service}ServiceUri"] == f"{service}Endpoint"
        passed = body(main()["modules"]["functionApp"])["params"][f"{service}Endpoint"]
        assert ref(passed) == f"storage.outputs.{service}Endpoint"
    assert (
        ref(body(main()["modules"]["functionApp"])["params"]["identityClientId"])
        == "identity.properties.clientId"
    )
    for path in all_templates():
        assert "AccountKey" not in path.read_text(encoding="utf-8"), path


def test_settings_are_parameters_with_design_defaults():
    settings = app_settings()
    passed = body(main()["modules"]["functionApp"])["params"]
    params = main()["parameters"]
    for setting, (module_param, main_param, default) in OPTIONAL_SETTINGS.items():
        value = settings[setting]
        text = json.dumps(value)
        assert module_param in text, f"{setting} is not fed by {module_param}: {value}"
        assert passed[module_param] == main_param, f"{module_param} is not fed by {main_param}"
        assert params[main_param]["default"] == default, f"{main_param} default is not DESIGN's {default!r}"
    defer_setting = settings["ROTATION_DEFER_TO_KEY_POLICY"]
    assert isinstance(defer_setting, dict), defer_setting
    defer = defer_setting["operator"]["operands"]
    assert (defer["true_value"], defer["false_value"]) == ("true", "false"), "bool as lower-case text"
    assert passed["allowedVaults"]["function"]["type"] == "join"
    assert passed["subscriptions"]["function"]["parameters"]["input_array"] == "rotationSubscriptionIds"
    hosts = variable(main(), "vaultHosts")
    assert hosts["config"] == "${v.name}${environment().suffixes.keyvaultDns}"


def test_setting_ranges_and_defaults_agree_with_config_py():
    if not CONFIG.exists():
        pytest.skip("rotation/config.py not present")
    text = CONFIG.read_text(encoding="utf-8")
    pattern = r'_(?:int|float)\(env, "(ROTATION_[A-Z_]+)", ([0-9.]+), ([0-9.]+), ([0-9.]+)\)'
    checked = 0
    for name, default, low, high in re.findall(pattern, text):
        if name not in OPTIONAL_SETTINGS:
            continue  # tuning knobs outside DESIGN.md section 7 keep config.py's defaults
        declared = main()["parameters"][OPTIONAL_SETTINGS[name][1]]
        bounds = {d["type"]: d["argument"] for d in declared["decorators"]}
        assert float(declared["default"]) == float(default), name
        if declared["type"] == "string":  # fractional seconds: Bicep has no float; config.py checks the range
            checked += 1
            continue
        assert bounds.get("min_value", -1) >= float(low), f"{name}: template allows less than config.py"
        assert bounds.get("max_value", float("inf")) <= float(high), (
            f"{name}: template allows more than config.py"
        )
        checked += 1
    assert checked >= 4, "config.py no longer reads the numeric settings the way this test expects"


def _render(value, samples: dict[str, str]) -> str:
    """The text an app setting would hold, given sample values of the module parameters."""
    if isinstance(value, str):
        if "${" in value:
            return re.sub(r"\$\{(\w+)\}", lambda m: samples[m.group(1)], value)
        return samples.get(value, value)
    fn = value.get("function")
    if fn and fn["type"] == "string":
        return samples[fn["parameters"]["value_to_convert"]]
    op = value["operator"]
    assert op["type"] == "conditional", value
    chosen = samples[op["operands"]["condition"]] == "true"
    return op["operands"]["true_value" if chosen else "false_value"]


@pytest.mark.parametrize("name", ["small", "large"])
def test_config_py_accepts_the_settings_the_templates_deploy(name):
    """Feed rotation.config.load_settings the app settings a deployment of each example produces."""
    config = pytest.importorskip("rotation.config")
    params_file = json.loads((INFRA / "params" / f"{name}.parameters.json").read_text(encoding="utf-8"))
    given = {k: v["value"] for k, v in params_file["parameters"].items()}
    declared = main()["parameters"]
    passed = body(main()["modules"]["functionApp"])["params"]
    samples = {
        "blobEndpoint": "https://stcmkrot0123456789.blob.core.windows.net/",
        "queueEndpoint": "https://stcmkrot0123456789.queue.core.windows.net/",
        "tableEndpoint": "https://stcmkrot0123456789.table.core.windows.net/",
        "identityClientId": "0f0f0f0f-1111-2222-3333-444444444444",
        "appInsightsConnectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
        "allowedVaults": ",".join(f"{v['name']}.vault.azure.net" for v in given["vaults"]),
        "subscriptions": ",".join(
            given.get("rotationSubscriptionIds", ["00000000-0000-0000-0000-0000000000aa"])
        ),
    }
    for module_param, main_param, _ in OPTIONAL_SETTINGS.values():
        value = given.get(main_param, declared[main_param]["default"])
        samples[module_param] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        assert passed[module_param] == main_param
    env = {setting: _render(value, samples) for setting, value in app_settings().items()}
    settings = config.load_settings(env)
    assert settings.storage.credential == "managedidentity"
    assert settings.storage.client_id == settings.client_id == samples["identityClientId"]
    assert settings.allowed_vaults == frozenset(samples["allowedVaults"].split(","))
    assert settings.container_group_policy == given.get("rotationContainerGroupPolicy", "report")


def test_function_app_is_python_on_flex_consumption_with_its_identity():
    fa = module("function-app")
    plan = body(fa["resources"]["plan"])
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    site = body(fa["resources"]["site"])
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    runtime = props["functionAppConfig"]["runtime"]
    assert runtime == {"name": "python", "version": "pythonVersion"}
    assert main()["parameters"]["pythonVersion"]["default"] == "3.12"
    deployment = props["functionAppConfig"]["deployment"]["storage"]
    assert deployment["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert "FUNCTIONS_WORKER_RUNTIME" not in app_settings(), (
        "Flex Consumption sets the runtime in functionAppConfig"
    )


def test_telemetry_uses_entra_id_only():
    mon = module("monitoring")
    assert body(mon["resources"]["appInsights"])["properties"]["DisableLocalAuth"] is True
    assert body(mon["resources"]["workspace"])["properties"]["features"]["disableLocalAuth"] is True
    assert role_of(mon, mon["resources"]["publisher"]) == "3913510d-42f4-4e42-8a64-420c390055eb"
    assert (
        app_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "ClientId=${identityClientId};Authorization=AAD"
    )


def test_http_routes_require_entra_id_but_the_event_grid_webhook_is_reachable():
    auth = body(module("function-app")["resources"]["auth"])
    assert auth["name"] == "authsettingsV2"
    props = auth["properties"]
    assert props["platform"]["enabled"] is True
    validation = props["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert all(p.startswith("/runtime/webhooks/") for p in validation["excludedPaths"])
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "authClientId"
    assert main()["parameters"]["authClientId"]["default"] is None, "the app registration must be given"


def test_app_roles_are_the_three_the_audit_knows():
    roles = json.loads((INFRA / "entra" / "app-roles.json").read_text(encoding="utf-8"))
    assert sorted(r["value"] for r in roles) == ["Rotation.Execute", "Rotation.Plan", "Rotation.Replay"]
    ids = [r["id"] for r in roles]
    assert len(set(ids)) == 3
    assert all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in ids)
    assert all(r["isEnabled"] is True for r in roles)


# ---------------------------------------------------------------- parameter files
@pytest.mark.parametrize("name", ["small", "large"])
def test_parameter_files_match_main(name):
    data = json.loads((INFRA / "params" / f"{name}.parameters.json").read_text(encoding="utf-8"))
    given = data["parameters"]
    declared = main()["parameters"]
    unknown = set(given) - set(declared)
    assert not unknown, f"{name}: parameters main.bicep does not declare: {unknown}"
    required = {k for k, v in declared.items() if v["default"] is None}
    assert required <= set(given), f"{name}: missing required {required - set(given)}"
    for key, entry in given.items():
        value = entry["value"]
        for deco in declared[key]["decorators"]:
            if deco["type"] == "allowed":
                assert value in deco["argument"], f"{name}: {key}={value!r} not allowed"
            elif deco["type"] == "min_value":
                assert value >= deco["argument"], f"{name}: {key} below minimum"
            elif deco["type"] == "max_value":
                assert value <= deco["argument"], f"{name}: {key} above maximum"
            elif deco["type"] == "min_length":
                assert len(value) >= deco["argument"], f"{name}: {key} too short"
            elif deco["type"] == "max_length":
                assert len(value) <= deco["argument"], f"{name}: {key} too long"
    for vault in given["vaults"]["value"]:
        assert {"name", "resourceGroup"} <= set(vault)
        assert set(vault) <= {
            "name",
            "resourceGroup",
            "subscriptionId",
            "accessModel",
            "systemTopicName",
            "consumerKeyAccess",
        }, vault
        assert vault.get("accessModel", "rbac") in {"rbac", "accessPolicy"}
        for access in vault.get("consumerKeyAccess", []):
            assert set(access) == {"keyName", "principalId"}
    assert given.get("deployEventSubscriptions", {"value": False})["value"] is False, (
        "the examples are pass 1; pass 2 adds deployEventSubscriptions=true on the command line"
    )


def test_large_example_spans_several_vaults_and_subscriptions():
    data = json.loads((INFRA / "params" / "large.parameters.json").read_text(encoding="utf-8"))["parameters"]
    vaults = data["vaults"]["value"]
    assert len(vaults) >= 2
    assert len({v.get("subscriptionId") for v in vaults}) >= 2
    assert len(data["rotationSubscriptionIds"]["value"]) >= 2
    small = json.loads((INFRA / "params" / "small.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert len(small["vaults"]["value"]) == 1
    assert "rotationSubscriptionIds" not in small, "small: one subscription, the deployment's own"


def test_the_worker_runs_with_two_malloc_arenas_as_bench_rss_measures_it():
    """glibc's default (8 arenas a core, one per busy worker thread) let a worker's resident
    set grow run after run; bench/rss.py measures it flat with the deployed value."""
    from bench.rss import DEPLOYED_ARENAS

    assert app_settings()["MALLOC_ARENA_MAX"] == DEPLOYED_ARENAS == "2"
