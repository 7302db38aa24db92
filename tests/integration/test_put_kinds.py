"""Data Factory factories and Databricks workspaces end to end: the PUT of the resource as read,
guarded by If-Match, against the emulator's routes (which keep every field and refuse a stale
ETag with 412), a concurrent owner's change never overwritten, each Databricks entity holding
the key moved in one PUT, and the blocked and auto-rotating cases."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

import function_app
from devstack.functions_host import deliver_event_grid
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.model.results import RunResult
from tests import scenarios as s
from tests.support.commands import cli, invoke
from tests.support.runs import by_name

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("cmk")
PINNED = s.key_id("cmk", OLD)
OTHER = s.key_id("other-cmk", s.vid("other-1"))
UAI = s.identity_id("uai-adf")
ADF_API, DBX_API = "2018-06-01", "2026-01-01"
# Fields the product does not model: a PUT that dropped one would lose it.
REPO = {
    "type": "FactoryGitHubConfiguration",
    "accountName": "contoso",
    "repositoryName": "etl",
    "collaborationBranch": "main",
    "rootFolder": "/",
}
FACTORY_EXTRAS = {
    "repoConfiguration": REPO,
    "publicNetworkAccess": "Disabled",
    "globalParameters": {"env": {"type": "String", "value": "prod"}},
}
WORKSPACE_EXTRAS = {
    "authorizations": [
        {
            "principalId": "00000000-0000-0000-0000-000000000001",
            "roleDefinitionId": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        }
    ],
    "parameters": {"enableNoPublicIp": {"value": True}},
}


def estate() -> dict[str, Any]:
    base = s.scenario(
        {
            "cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h")),
            "other-cmk": s.key(s.version("other-1")),
        }
    )
    base["dataFactories"] = [
        s.factory("adf-pinned", PINNED, key_identity=UAI, tags={"team": "data"}, properties=FACTORY_EXTRAS),
        s.factory("adf-latest", KEY),
        s.factory("adf-lost-identity", PINNED, key_identity=UAI, identities=[]),
    ]
    base["databricksWorkspaces"] = [
        s.workspace(
            "dbx-all", managed_services=PINNED, managed_disk=PINNED, dbfs=PINNED, properties=WORKSPACE_EXTRAS
        ),
        s.workspace("dbx-mixed", managed_services=OTHER, managed_disk=PINNED, disk_auto_rotation=True),
    ]
    return base


def run(stack: Any) -> RunResult:
    return stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest"))


def state(stack: Any, entry: str) -> dict[str, dict[str, Any]]:
    return {r["id"].rsplit("/", 1)[1]: r for r in stack.admin.state()[entry]}


def test_one_run_moves_each_pinned_resource_with_one_put_and_keeps_every_other_field(stack) -> None:
    stack.load(estate())
    result = run(stack)
    steps = by_name(result)

    assert (steps["adf-pinned"].action, steps["adf-pinned"].outcome) == ("update", "verified")
    assert (steps["adf-latest"].action, steps["adf-latest"].reason) == ("auto-rotating", "versionless-key-id")
    assert (steps["adf-lost-identity"].action, steps["adf-lost-identity"].reason) == (
        "blocked",
        "identity-not-assigned",
    )
    assert steps["dbx-all"].outcome == "verified"
    assert "managedServices, managedDisk, dbfsRoot" in steps["dbx-all"].message
    assert (steps["dbx-mixed"].action, steps["dbx-mixed"].reason) == (
        "auto-rotating",
        "auto-rotation-enabled",
    )

    factories = state(stack, "dataFactories")
    assert factories["adf-pinned"]["keyId"] == s.key_id("cmk", NEW)
    assert factories["adf-pinned"]["keyIdentity"] == UAI and factories["adf-pinned"]["identities"] == [UAI]
    assert factories["adf-pinned"]["tags"] == {"team": "data"}
    assert factories["adf-pinned"]["properties"] == FACTORY_EXTRAS
    assert factories["adf-latest"]["keyId"] == KEY
    workspaces = state(stack, "databricksWorkspaces")
    moved = workspaces["dbx-all"]
    assert (moved["managedServicesKeyId"], moved["managedDiskKeyId"], moved["dbfsKeyId"]) == (
        s.key_id("cmk", NEW),
    ) * 3
    assert moved["properties"]["authorizations"] == WORKSPACE_EXTRAS["authorizations"]
    assert moved["properties"]["parameters"]["enableNoPublicIp"] == {"value": True}
    assert workspaces["dbx-mixed"]["managedDiskKeyId"] == PINNED  # the service's own rotation: left alone
    puts = [c["path"].rsplit("/", 1)[1] for c in stack.writes("PUT")]
    assert sorted(puts) == ["adf-pinned", "dbx-all"]  # one PUT each, whatever the number of entities
    assert stack.writes("PATCH") == []
    reads = [
        c for c in stack.admin.calls()["calls"] if c["method"] == "GET" and c["path"].endswith("/adf-pinned")
    ]
    assert len(reads) == 1  # the PUT needs the document and its ETag: one GET, the PUT's answer verified


def test_the_emulator_refuses_a_put_with_a_stale_etag(stack) -> None:
    stack.load(estate())
    arm = stack.service().clients.arm()
    target = s.document_id("dataFactories", "adf-pinned")
    factory, etag = arm.get_tagged(target, ADF_API)
    assert factory is not None and etag == factory["eTag"]
    body = {k: v for k, v in factory.items() if k not in ("id", "name", "type", "eTag")}
    body["tags"] = {"team": "data", "owner": "someone"}
    arm.write("PUT", target, ADF_API, body, {"If-Match": etag})
    with pytest.raises(HttpResponseError) as refused:
        arm.write("PUT", target, ADF_API, body, {"If-Match": etag})
    assert refused.value.status_code == 412
    assert arm.get(target, ADF_API)["tags"] == {"team": "data", "owner": "someone"}


def test_a_change_made_between_the_read_and_the_put_is_kept_and_the_key_still_moves(stack) -> None:
    stack.load(estate())
    # The product's PUT is held in the emulator until released; meanwhile the factory's owner
    # changes its tags (through the upper-case id, which the fault does not match: ARM ids ignore
    # case).
    held = stack.admin.add_fault(method="PUT", pathRegex="factories/adf-pinned$", latencyMs=60_000, count=1)
    results: list[RunResult] = []
    rotation = threading.Thread(target=lambda: results.append(run(stack)))
    rotation.start()
    target = s.document_id("dataFactories", "adf-pinned")
    arm = stack.service().clients.arm()
    while next(f for f in stack.admin.faults() if f["id"] == held)["count"]:
        time.sleep(0.02)  # until the product's PUT is held in the emulator (a real process)
    factory = arm.get(target, ADF_API)
    assert factory is not None
    owner = {k: v for k, v in factory.items() if k not in ("id", "name", "type", "eTag")}
    owner["tags"] = {"team": "data", "cost-centre": "42"}
    arm.write(
        "PUT",
        target.upper().replace(
            "/PROVIDERS/MICROSOFT.DATAFACTORY/FACTORIES/", "/providers/Microsoft.DataFactory/factories/"
        ),
        ADF_API,
        owner,
    )
    stack.admin.release_holds()  # the product's PUT goes on, with the ETag of its earlier read
    rotation.join(timeout=60)

    assert by_name(results[0])["adf-pinned"].outcome == "verified"
    after = state(stack, "dataFactories")["adf-pinned"]
    assert after["tags"] == {"team": "data", "cost-centre": "42"}  # the owner's change survived
    assert after["keyId"] == s.key_id("cmk", NEW)
    statuses = [c["status"] for c in stack.writes("PUT") if c["path"].endswith("adf-pinned")]
    assert statuses == [412, 200]  # refused on the stale ETag, then read again and written


def test_a_second_412_fails_the_step_with_a_code_and_overwrites_nothing(stack) -> None:
    stack.load(estate())
    stack.admin.add_fault(method="PUT", pathRegex="factories/adf-pinned$", status=412, count=2)
    step = by_name(run(stack))["adf-pinned"]
    assert (step.outcome, step.error_code) == ("failed", "resource-changed")
    assert state(stack, "dataFactories")["adf-pinned"]["keyId"] == PINNED
    assert len([c for c in stack.writes("GET") if c["path"].endswith("adf-pinned")]) >= 2  # read afresh


def test_the_vault_refusing_a_workspace_entity_fails_its_step_with_the_remediation(stack) -> None:
    scenario = estate()
    scenario["vaults"][s.VAULT]["deniedIdentities"] = ["AzureDatabricks"]
    stack.load(scenario)
    step = by_name(run(stack))["dbx-all"]
    assert step.outcome == "failed" and step.error_code == "BadRequest"
    assert "AzureDatabricks application" in (step.hint or "")
    assert state(stack, "databricksWorkspaces")["dbx-all"]["managedServicesKeyId"] == PINNED


def test_the_cli_plans_and_rotates_one_workspace_by_target_and_inventories_both_kinds(stack) -> None:
    stack.load(estate())
    target = s.document_id("databricksWorkspaces", "dbx-all")
    code, plan = cli("plan", KEY, "--target", target)
    assert code == 0 and [(p["kind"], p["action"]) for p in plan["steps"]] == [("databricks", "update")]
    assert "managedServices, managedDisk, dbfsRoot" in plan["steps"][0]["message"]
    code, table = invoke("plan", KEY, "--target", target)
    assert code == 0 and "dbx-all" in table and "databricks" in table
    code, done = cli("rotate", KEY, "--target", target, "--yes")
    assert code == 0 and done["summary"] == {"verified": 1}
    assert [c["path"].rsplit("/", 1)[1] for c in stack.writes("PUT")] == ["dbx-all"]
    code, estate_now = cli("inventory", "--kind", "datafactory")
    assert code == 0
    rows = {c["resourceId"].rsplit("/", 1)[1]: c["action"] for c in estate_now["consumers"]}
    assert rows == {"adf-pinned": "update", "adf-latest": "auto-rotating", "adf-lost-identity": "blocked"}


def test_a_key_vault_event_moves_them_through_the_queue_trigger(stack) -> None:
    stack.load(estate())
    event = s.event_grid_event("KeyNewVersionCreated", "cmk", NEW, event_id="evt-put-kinds")
    assert deliver_event_grid(function_app.on_key_event, [event]) == [None]
    dispatcher = stack.dispatcher(function_app.run_rotation)
    stats = dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    assert stats.failures == [] and len(stats.invocations) == 1
    assert state(stack, "dataFactories")["adf-pinned"]["keyId"] == s.key_id("cmk", NEW)
    assert state(stack, "databricksWorkspaces")["dbx-all"]["dbfsKeyId"] == s.key_id("cmk", NEW)


def test_managed_hsm_keys_in_a_workspace_and_a_factory_are_moved(stack) -> None:
    stack.set(ROTATION_ALLOWED_VAULTS=f"{s.VAULT_HOST},{s.HSM_HOST}")
    key = s.key(s.version("old", created="-300d"), s.version("new", created="-1h"), kty="RSA-HSM")
    scenario = s.scenario({}, hsm_keys={"hsm-cmk": key})
    old = s.hsm_key_id("hsm-cmk", OLD)
    scenario["databricksWorkspaces"] = [s.workspace("dbx-hsm", managed_services=old, dbfs=old)]
    scenario["dataFactories"] = [s.factory("adf-hsm", old)]
    stack.load(scenario)
    result = stack.service().reconciler.run(
        new_request(parse_key_id(s.hsm_key_id("hsm-cmk")), "cli", "pytest")
    )
    assert {n: step.outcome for n, step in by_name(result).items()} == {
        "dbx-hsm": "verified",
        "adf-hsm": "verified",
    }
    moved = state(stack, "databricksWorkspaces")["dbx-hsm"]
    assert moved["managedServicesKeyId"] == moved["dbfsKeyId"] == s.hsm_key_id("hsm-cmk", NEW)
    assert state(stack, "dataFactories")["adf-hsm"]["keyId"] == s.hsm_key_id("hsm-cmk", NEW)


def test_resource_graph_finds_them_as_the_arm_lists_do_and_the_write_still_reads_arm(stack) -> None:
    stack.load(estate())
    stack.set(ROTATION_DISCOVERY="arm")
    planned = stack.service().reconciler.plan(parse_key_id(KEY)).steps
    by_arm = {st.target: (st.action, st.reason) for st in planned}
    stack.set(ROTATION_DISCOVERY="resourcegraph")
    stack.admin.clear_calls()
    result = run(stack)
    assert {st.target: (st.action, st.reason) for st in result.steps} == by_arm
    assert by_name(result)["dbx-all"].outcome == "verified"
    listed = [c for c in stack.admin.calls()["calls"] if c["method"] == "GET" and c["path"].count("/") == 5]
    assert not [c for c in listed if "datafactory" in c["path"].lower() or "databricks" in c["path"].lower()]
