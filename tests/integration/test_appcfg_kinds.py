"""App Configuration stores, HDInsight clusters, Synapse workspaces and AKS KMS data encryption
end to end on the local stack (issue 25): the emulator's routes in the specs' shapes through the
generic ARM client, a KeyNewVersionCreated event through intake, the queue and the worker, the
CLI's plan (JSON and table), inventory and report, blocked reasons, the vault refusing an
identity and a failed long-running action."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

import function_app
from devstack.functions_host import deliver_event_grid, http_request
from rotation.doors.cli import main
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.model.results import RunResult
from rotation.storage import audit as audit_module
from tests import scenarios as s
from tests.support.runs import by_name

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("cmk")
PINNED = s.key_id("cmk", OLD)
UAI = s.identity_id("uai-appcfg")


def estate(**key_kwargs: Any) -> dict[str, Any]:
    """One of each: a pinned and a versionless store, a cluster, a workspace, a new-KMS AKS cluster."""
    base = s.scenario(
        {"cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"), **key_kwargs)}
    )
    return s.with_keyed(
        base,
        (
            "appConfigurationStores",
            s.keyed("appConfigurationStores", "appcs-pinned", PINNED, identities=[UAI]),
        ),
        ("appConfigurationStores", s.keyed("appConfigurationStores", "appcs-latest", KEY, identities=[UAI])),
        ("hdInsightClusters", s.keyed("hdInsightClusters", "hdi-spark", PINNED, identities=[UAI])),
        (
            "synapseWorkspaces",
            s.keyed("synapseWorkspaces", "syn-ws", PINNED, identities=[], systemAssigned=True),
        ),
        (
            "managedClusters",
            s.keyed(
                "managedClusters", "aks-new-kms", KEY, identities=[UAI], infrastructureEncryption="Enabled"
            ),
        ),
    )


def run(stack, **fields: Any) -> RunResult:
    return stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest", **fields))


def held(stack, entry: str) -> dict[str, str]:
    return {r["id"].rsplit("/", 1)[1]: r["keyId"] for r in stack.admin.state()[entry]}


def test_routes_answer_in_the_specs_shapes(stack) -> None:
    stack.load(estate())
    arm = stack.service().clients.arm()
    stores = list(
        arm.list_by_subscription(s.SUB_A, "Microsoft.AppConfiguration/configurationStores", "2024-06-01")
    )
    assert sorted(st["name"] for st in stores) == ["appcs-latest", "appcs-pinned"]
    client_id = stores[0]["identity"]["userAssignedIdentities"][UAI]["clientId"]
    assert stores[0]["properties"]["encryption"]["keyVaultProperties"]["identityClientId"] == client_id

    body = {
        "properties": {
            "encryption": {
                "keyVaultProperties": {"keyIdentifier": s.key_id("cmk", NEW), "identityClientId": client_id}
            }
        }
    }
    after = arm.write("PATCH", s.keyed_id("appConfigurationStores", "appcs-pinned"), "2024-06-01", body)
    [patch] = stack.writes("PATCH")
    assert patch["status"] == 201  # the spec's answer: 201 with the store Updating, then polled
    assert after is not None and after["properties"]["encryption"]["keyVaultProperties"][
        "keyIdentifier"
    ].endswith(NEW)

    hdi = arm.get(s.keyed_id("hdInsightClusters", "hdi-spark"), "2021-06-01")
    assert hdi is not None
    disk = hdi["properties"]["diskEncryptionProperties"]
    assert (disk["keyName"], disk["keyVersion"], disk["msiResourceId"]) == ("cmk", OLD, UAI)
    action = s.keyed_id("hdInsightClusters", "hdi-spark") + "/rotatediskencryptionkey"
    arm.write(
        "POST", action, "2021-06-01", {"vaultUri": disk["vaultUri"], "keyName": "cmk", "keyVersion": NEW}
    )
    [post] = stack.writes("POST")
    assert post["status"] == 202  # the spec's example: 202 with Location
    assert held(stack, "hdInsightClusters") == {"hdi-spark": s.key_id("cmk", NEW)}

    ws = arm.get(s.keyed_id("synapseWorkspaces", "syn-ws"), "2021-06-01")
    assert ws is not None and ws["properties"]["encryption"]["cmk"]["key"] == {
        "name": "default",
        "keyVaultUrl": PINNED,
    }
    keys = arm.get(s.keyed_id("synapseWorkspaces", "syn-ws") + "/keys", "2021-06-01")
    assert keys is not None
    assert [k["properties"] for k in keys["value"]] == [{"isActiveCMK": True, "keyVaultUrl": PINNED}]
    aks = arm.get(s.keyed_id("managedClusters", "aks-new-kms"), "2025-10-02-preview")
    assert aks is not None
    profile = aks["properties"]["securityProfile"]["kubernetesResourceObjectEncryptionProfile"]
    assert profile == {"infrastructureEncryption": "Enabled"}


def test_one_event_writes_the_pinned_store_and_cluster_and_leaves_the_rest(stack) -> None:
    stack.load(estate())
    deliver_event_grid(
        function_app.on_key_event,
        [s.event_grid_event("KeyNewVersionCreated", "cmk", NEW, event_id="evt-appcfg")],
    )
    dispatcher = stack.dispatcher(function_app.run_rotation)
    stats = dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    assert stats.failures == [] and len(stats.invocations) == 1

    assert held(stack, "appConfigurationStores") == {
        "appcs-pinned": s.key_id("cmk", NEW),
        "appcs-latest": KEY,
    }
    assert held(stack, "hdInsightClusters") == {"hdi-spark": s.key_id("cmk", NEW)}
    assert held(stack, "synapseWorkspaces") == {"syn-ws": PINNED}  # never written
    [patch] = stack.writes("PATCH")
    assert patch["path"].endswith("/appcs-pinned")
    [post] = stack.writes("POST")
    assert post["path"].endswith("/hdi-spark/rotatediskencryptionkey")
    assert stack.writes("PUT") == []

    service = stack.service()
    records, _ = service.audit.query(top=500)
    _, findings = audit_module.verify(
        service.audit, run_ids=sorted({r["runId"] for r in records if r.get("runId")})
    )
    assert findings == []
    assert {r["target"].rsplit("/", 1)[1] for r in records if r["kind"] == "verified"} == {
        "appcs-pinned",
        "hdi-spark",
    }


def test_plan_in_json_and_table_names_each_kind_and_synapse_procedure(stack) -> None:
    stack.load(estate())
    runner = CliRunner()
    outcome = runner.invoke(main, ["-o", "json", "plan", KEY], catch_exceptions=False)
    assert outcome.exit_code == 3, outcome.output  # Synapse needs a person
    steps = {st["target"].rsplit("/", 1)[1]: st for st in json.loads(outcome.output)["steps"]}
    assert {n: st["action"] for n, st in steps.items()} == {
        "appcs-pinned": "update",
        "appcs-latest": "auto-rotating",
        "hdi-spark": "update",
        "syn-ws": "manual-required",
        "aks-new-kms": "auto-rotating",
    }
    message = steps["syn-ws"]["message"]
    assert "temporary workspace key" in message and "--workspace-name syn-ws" in message
    table = runner.invoke(main, ["plan", KEY], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert table.exit_code == 3
    for word in ("appconfiguration", "hdinsight", "synapse", "manual-required", "auto-rotating"):
        assert word in table.output, word
    assert stack.writes("PATCH") == [] and stack.writes("POST") == []


def test_http_plan_with_a_target_of_each_kind(stack) -> None:
    """POST /api/rotations/plan through the function entry point, its `targets` naming one
    resource of each new type (the doors take them from the registry)."""
    stack.load(estate())
    targets = [
        s.keyed_id("appConfigurationStores", "appcs-pinned"),
        s.keyed_id("hdInsightClusters", "hdi-spark"),
        s.keyed_id("synapseWorkspaces", "syn-ws"),
    ]
    body = json.dumps({"keyId": KEY, "targets": targets}).encode()
    response = function_app.plan_rotation(http_request("POST", "/api/rotations/plan", body=body))
    assert response.status_code == 200, response.get_body()
    steps = {st["target"].rsplit("/", 1)[1]: st["action"] for st in json.loads(response.get_body())["steps"]}
    assert steps == {"appcs-pinned": "update", "hdi-spark": "update", "syn-ws": "manual-required"}
    assert stack.writes("PATCH") == [] and stack.writes("POST") == []


def test_inventory_and_report_show_each_kind(stack) -> None:
    stack.load(estate())
    runner = CliRunner()
    inventory = runner.invoke(main, ["-o", "json", "inventory"], catch_exceptions=False)
    assert inventory.exit_code == 0, inventory.output
    rows = {c["resourceId"].rsplit("/", 1)[1]: c for c in json.loads(inventory.output)["consumers"]}
    assert {n: (r["kind"], r["action"]) for n, r in rows.items()} == {
        "appcs-pinned": ("appconfiguration", "update"),
        "appcs-latest": ("appconfiguration", "auto-rotating"),
        "hdi-spark": ("hdinsight", "update"),
        "syn-ws": ("synapse", "manual-required"),
        "aks-new-kms": ("aks", "auto-rotating"),
    }
    report = runner.invoke(main, ["-o", "json", "report", "--max-age-days", "90"], catch_exceptions=False)
    assert report.exit_code in (0, 3), report.output
    assert "syn-ws" in report.output and "hdi-spark" in report.output


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (
            lambda: s.with_keyed(
                s.scenario(
                    {"cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))}
                ),
                # the store names a client id of an identity it no longer has
                (
                    "appConfigurationStores",
                    s.keyed("appConfigurationStores", "appcs-lost", PINNED, identities=[], key_identity=UAI),
                ),
                (
                    "hdInsightClusters",
                    s.keyed("hdInsightClusters", "hdi-lost", PINNED, identities=[], key_identity=UAI),
                ),
            ),
            "identity-not-assigned",
        ),
        (
            lambda: s.with_keyed(
                s.scenario({"cmk": s.key(s.version("old"), kty="EC")}),
                ("appConfigurationStores", s.keyed("appConfigurationStores", "appcs-ec", PINNED)),
                ("hdInsightClusters", s.keyed("hdInsightClusters", "hdi-ec", PINNED)),
            ),
            "key-type-unsupported",
        ),
    ],
    ids=["identity-not-assigned", "key-type-unsupported"],
)
def test_blocked_reasons_write_nothing(stack, scenario: Any, expected: str) -> None:
    stack.load(scenario())
    result = run(stack)
    assert {st.action for st in result.steps} == {"blocked"}
    assert {st.reason for st in result.steps} == {expected}
    assert stack.writes("PATCH") == [] and stack.writes("POST") == [] and result.exit_code == 3


def test_vault_refusing_the_identity_fails_with_a_hint_and_leaves_the_old_version(stack) -> None:
    scenario = estate()
    scenario["vaults"]["contoso-cmk"]["deniedIdentities"] = [UAI]
    stack.load(scenario)
    steps = by_name(run(stack))
    for name in ("appcs-pinned", "hdi-spark"):
        assert steps[name].outcome == "failed", name
        assert "Key Vault Crypto Service Encryption User" in (steps[name].hint or ""), name
    assert held(stack, "appConfigurationStores")["appcs-pinned"] == PINNED
    assert held(stack, "hdInsightClusters")["hdi-spark"] == PINNED


def test_a_failed_rotate_action_leaves_the_old_version_and_the_next_run_verifies(stack) -> None:
    stack.load(estate())
    stack.admin.add_fault(
        method="POST", pathRegex="clusters/hdi-spark/rotatediskencryptionkey$", lroResult="Failed"
    )
    first = by_name(run(stack))
    assert first["hdi-spark"].outcome == "failed" and first["appcs-pinned"].outcome == "verified"
    assert held(stack, "hdInsightClusters")["hdi-spark"] == PINNED
    stack.admin.clear_faults()
    again = by_name(run(stack))
    assert again["hdi-spark"].outcome == "verified"
    assert held(stack, "hdInsightClusters")["hdi-spark"] == s.key_id("cmk", NEW)
