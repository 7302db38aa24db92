"""A deployment puts the old key version back (issue 26 item 5), against the emulator and Azurite.

The "deployment" is another principal: it signs in through the emulator's identity endpoint
with its own client id and PATCHes the registry back to the old version through the HTTPS proxy,
as a Bicep or Terraform run with a pinned `keyVersion` would. The emulator's activity log then
names it, and the next run must say so, record `consumer-reverted`, and roll the registry forward.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ManagedIdentityCredential

import function_app
from devstack.functions_host import http_request, timer_request
from emulator import cli as emulator_cli
from emulator.runtime import write_env_file
from rotation.azure.activitylog import API_VERSION, events_path
from rotation.azure.arm import Arm
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from tests import scenarios as s
from tests.integration.cli_support import run as cli

OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("acr-cmk")
REG = s.registry_id("reg1")
DEPLOYER = "de91d0e1-0000-4000-8000-00000000beef"  # the pipeline's service principal (client id)
ARM = "https://management.azure.com"


def load(stack) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
            registries=[
                s.registry("reg1", s.key_id("acr-cmk", OLD)),
                s.registry("reg2", s.key_id("acr-cmk", OLD)),
            ],
        )
    )


def rotate(stack, **fields: Any):
    return stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest", **fields))


def deployer_arm() -> Arm:
    """ARM as the deployment pipeline's principal sees it (its own token from the emulator)."""
    return Arm(
        ManagedIdentityCredential(client_id=DEPLOYER),
        ARM,
        [f"{ARM}/.default"],
        RequestsTransport(),
        polling_interval=0.05,
    )


def deploy_old_version(resource_id: str = REG, tags: dict[str, str] | None = None) -> None:
    """What a template pinning the old version does on its next deployment: PATCH it back."""
    arm = deployer_arm()
    body: dict[str, Any] = {
        "properties": {"encryption": {"keyVaultProperties": {"keyIdentifier": s.key_id("acr-cmk", OLD)}}}
    }
    if tags is not None:
        body["tags"] = tags
    arm.write("PATCH", resource_id, "2025-11-01", body)


def registry_key(stack, name: str = "reg1") -> str:
    return next(r["keyId"] for r in stack.admin.state()["registries"] if r["id"].endswith("/" + name))


def audit_of(stack, kind: str) -> list[dict[str, Any]]:
    records, _ = stack.service().audit.query(top=300)
    return [r for r in records if r["kind"] == kind]


def test_a_reverted_consumer_is_reported_with_its_caller_and_rolled_forward(stack, caplog) -> None:
    load(stack)
    first = rotate(stack)
    assert first.status == "succeeded" and registry_key(stack).endswith(NEW)
    assert audit_of(stack, "consumer-reverted") == []  # moving off the old version is no revert

    deploy_old_version()
    assert registry_key(stack).endswith(OLD)

    with caplog.at_level(logging.WARNING, logger="rotation.reverts"):
        second = rotate(stack)
    assert second.status == "succeeded" and registry_key(stack).endswith(NEW)
    step = next(st for st in second.steps if st.target == REG)
    assert (step.action, step.outcome, step.from_version, step.to_version) == ("update", "verified", OLD, NEW)
    assert f"reverted: run {first.run_id} set {NEW}" in step.message
    assert f"now on {OLD}, changed by: {DEPLOYER}" in step.message
    other = next(st for st in second.steps if st.target != REG)
    assert "reverted" not in other.message and other.action == "already-current"

    [incident] = audit_of(stack, "consumer-reverted")
    assert (incident["target"], incident["fromVersion"], incident["toVersion"]) == (REG, NEW, OLD)
    assert incident["runId"] == second.run_id and incident["outcome"] == "reported"
    changed = incident["detail"]["changedBy"]
    assert changed["caller"] == DEPLOYER
    assert changed["operation"] == "Microsoft.ContainerRegistry/registries/write"
    assert changed["correlationId"] and changed["unreadable"] is None
    assert incident["detail"]["writtenByRun"] == first.run_id
    assert incident["detail"]["rollForwardTo"] == NEW
    [line] = [r for r in caplog.records if r.name == "rotation.reverts"]
    assert line.levelno == logging.WARNING and DEPLOYER in line.getMessage() and REG in line.getMessage()

    # Rolled forward and remembered: the next run finds nothing reverted.
    third = rotate(stack)
    assert all("reverted" not in st.message for st in third.steps)
    assert len(audit_of(stack, "consumer-reverted")) == 1
    assert cli("audit", "verify").exit_code == 0  # the incident is part of the run's anchored chain


def test_one_activity_log_read_per_reverted_consumer_and_none_without_a_revert(stack) -> None:
    load(stack)
    rotate(stack)
    stack.admin.clear_calls()
    rotate(stack)
    assert not [c for c in stack.admin.calls()["calls"] if "Microsoft.Insights" in c["path"]]
    deploy_old_version()
    stack.admin.clear_calls()
    rotate(stack)
    reads = [c for c in stack.admin.calls()["calls"] if "Microsoft.Insights" in c["path"]]
    assert [(c["method"], c["status"]) for c in reads] == [("GET", 200)]
    deploy_old_version()
    deploy_old_version(s.registry_id("reg2"))
    stack.admin.clear_calls()
    result = rotate(stack)
    reads = [c for c in stack.admin.calls()["calls"] if "Microsoft.Insights" in c["path"]]
    assert [(c["method"], c["status"]) for c in reads] == [("GET", 200)] * 2
    assert all(DEPLOYER in st.message and st.outcome == "verified" for st in result.steps)


def test_an_unreadable_activity_log_still_records_the_revert(stack) -> None:
    load(stack)
    rotate(stack)
    deploy_old_version()
    stack.admin.add_fault(method="GET", pathRegex="Microsoft.Insights/eventtypes", status=403)
    result = rotate(stack)
    step = next(st for st in result.steps if st.target == REG)
    assert step.outcome == "verified"
    assert "changed by: unknown (activity log not readable: 403 AuthorizationFailed)" in step.message
    [incident] = audit_of(stack, "consumer-reverted")
    assert incident["detail"]["changedBy"]["caller"] is None
    assert incident["detail"]["changedBy"]["unreadable"] == "403 AuthorizationFailed"


def test_a_dry_run_and_the_plan_say_so_without_recording_an_incident(stack) -> None:
    load(stack)
    first = rotate(stack)
    deploy_old_version()
    plan = stack.service().reconciler.plan(parse_key_id(KEY))
    step = next(st for st in plan.steps if st.target == REG)
    assert step.action == "update" and f"run {first.run_id}" in step.message and DEPLOYER in step.message
    body = json.dumps({"keyId": KEY}).encode()
    response = function_app.plan_rotation(http_request("POST", "/api/rotations/plan", body=body))
    served = {st["target"]: st for st in json.loads(response.get_body())["steps"]}
    assert response.status_code == 200 and served[REG]["message"] == step.message
    dry = rotate(stack, dry_run=True)
    assert next(st for st in dry.steps if st.target == REG).outcome == "planned"
    assert audit_of(stack, "consumer-reverted") == []
    assert registry_key(stack).endswith(OLD)


def test_disable_refuses_a_version_a_consumer_was_reverted_to_unless_forced(stack) -> None:
    load(stack)
    rotate(stack)
    deploy_old_version()
    rotate(stack)  # records the revert, rolls reg1 forward: nothing holds OLD any more
    result = cli("versions", "disable", s.key_id("acr-cmk", OLD), "--yes")
    text = " ".join(result.output.split())
    assert result.exit_code == 3 and "refused" in text
    assert f"reg1 (by {DEPLOYER}, correlation " in text and "ROTATION_REVERT_GUARD_DAYS=30" in text
    [refusal] = audit_of(stack, "version-disable")
    assert refusal["reason"] == "version-reverted-to" and refusal["detail"]["reverts"][0]["target"] == REG

    result = cli("-o", "json", "versions", "disable", s.key_id("acr-cmk", OLD), "--yes")
    outcome = json.loads(result.output)
    assert result.exit_code == 3 and outcome["outcome"] == "refused"
    [revert] = outcome["reverts"]
    assert (revert["target"], revert["by"], revert["toVersion"], revert["fromVersion"]) == (
        REG,
        DEPLOYER,
        OLD,
        NEW,
    )
    assert revert["correlationId"]

    result = cli("-o", "json", "versions", "disable", s.key_id("acr-cmk", OLD), "--yes", "--force")
    assert result.exit_code == 0 and json.loads(result.output)["outcome"] == "disabled-override"


def test_the_guard_setting_bounds_the_window(stack) -> None:
    load(stack)
    rotate(stack)
    deploy_old_version()
    rotate(stack)
    stack.set(ROTATION_REVERT_GUARD_DAYS="0")  # off
    result = cli("-o", "json", "versions", "disable", s.key_id("acr-cmk", OLD), "--yes")
    assert result.exit_code == 0 and json.loads(result.output)["outcome"] == "disabled"


@pytest.mark.parametrize("pending", [True, False])
def test_inventory_marks_a_reverted_consumer(stack, pending: bool) -> None:
    load(stack)
    rotate(stack)
    deploy_old_version()
    if not pending:
        rotate(stack)  # recorded and rolled forward: still marked within the guard window
    result = cli("-o", "json", "inventory")
    rows = {r["resourceId"]: r for r in json.loads(result.output)["consumers"]}
    assert result.exit_code == 0 and rows[s.registry_id("reg2")]["reverted"] is None
    mark = rows[REG]["reverted"]
    assert mark["pending"] is pending and mark["toVersion"] == OLD and mark["fromVersion"] == NEW
    if not pending:
        assert mark["by"] == DEPLOYER and mark["correlationId"]
    response = function_app.list_inventory(http_request("GET", "/api/inventory", query={"key": KEY}))
    served = {r["resourceId"]: r for r in json.loads(response.get_body())["consumers"]}
    assert response.status_code == 200 and served[REG]["reverted"] == mark
    table = cli("inventory")
    line = next(text for text in table.output.splitlines() if "reg1" in text)
    assert "(reverted)" in line
    assert "(reverted)" not in next(text for text in table.output.splitlines() if "reg2" in text)


def test_the_rotate_command_shows_the_revert_in_json_and_table(stack) -> None:
    load(stack)
    assert cli("rotate", KEY, "--yes").exit_code == 0
    deploy_old_version()
    result = cli("-o", "json", "rotate", KEY, "--yes")
    assert result.exit_code == 0
    steps = {st["target"]: st for st in json.loads(result.output)["steps"]}
    assert steps[REG]["outcome"] == "verified" and f"changed by: {DEPLOYER}" in steps[REG]["message"]
    deploy_old_version()
    table = cli("rotate", KEY, "--yes")
    assert table.exit_code == 0 and "reverted" in table.output and DEPLOYER in " ".join(table.output.split())


def test_the_emulators_activity_log_filters_by_resource_and_time(stack) -> None:
    load(stack)
    before = datetime.now(UTC) - timedelta(seconds=5)
    deploy_old_version()
    arm = deployer_arm()

    def events(path: str) -> list[dict[str, Any]]:
        answer = arm.get(path, API_VERSION)
        assert answer is not None  # a GET of a list always answers a body
        return answer["value"]

    [event] = events(events_path(REG, before))
    assert (event["caller"], event["operationName"]["value"], event["status"]["value"]) == (
        DEPLOYER,
        "Microsoft.ContainerRegistry/registries/write",
        "Succeeded",
    )
    assert event["resourceId"] == REG and event["correlationId"] and event["claims"]["appid"] == DEPLOYER
    assert events(events_path(s.registry_id("reg2"), before)) == []
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert events(events_path(REG, later)) == []
    path = f"/subscriptions/{s.SUB_A}/providers/Microsoft.Insights/eventtypes/management/values"
    with pytest.raises(HttpResponseError) as refused:  # Azure requires the start time
        arm.get(path, API_VERSION)
    assert refused.value.status_code == 400


def test_the_sweep_finds_the_revert_and_the_queued_run_rolls_it_forward(stack) -> None:
    """The unattended path: the timer's sweep sees reg1 behind, the worker's run reports who."""
    load(stack)
    assert cli("rotate", KEY, "--yes").exit_code == 0
    deploy_old_version()
    function_app.sweep_drift(timer_request())
    dispatcher = stack.dispatcher(function_app.run_rotation)
    stats = dispatcher.run_until_idle(timeout=90)
    dispatcher.close()
    assert stats.failures == [] and registry_key(stack).endswith(NEW)
    [incident] = audit_of(stack, "consumer-reverted")
    assert incident["detail"]["changedBy"]["caller"] == DEPLOYER and incident["actor"] != "pytest"


def test_a_revert_the_run_may_not_roll_forward_is_recorded_as_such(stack) -> None:
    """The same deployment also opted the registry out: reported, left alone, and said so."""
    load(stack)
    rotate(stack)
    deploy_old_version(tags={"cmk-rotation": "off"})
    result = rotate(stack)
    step = next(st for st in result.steps if st.target == REG)
    assert step.action == "opted-out" and registry_key(stack).endswith(OLD)
    [incident] = audit_of(stack, "consumer-reverted")
    assert "not rolled forward: opted-out" in incident["message"]
    assert incident["detail"]["rollForwardTo"] is None


def test_python_m_emulator_activity_shows_who_wrote_what(stack, tmp_path, capsys) -> None:
    load(stack)
    deploy_old_version()
    env_file = tmp_path / "emulator.env"
    write_env_file(env_file, stack.env)
    assert emulator_cli.main(["--env-file", str(env_file), "activity"]) == 0
    [event] = json.loads(capsys.readouterr().out)
    assert (event["caller"], event["resourceId"]) == (DEPLOYER, REG)


def test_a_revert_made_by_an_action_names_its_caller(stack) -> None:
    """HDInsight moves its key by `POST .../rotatediskencryptionkey`, not a PATCH: the activity
    log names that write by its action, and the revert must still say who made it."""
    uai = s.identity_id("uai-hdi")
    cluster = s.keyed_id("hdInsightClusters", "hdi-spark")
    stack.load(
        s.with_keyed(
            s.scenario(
                {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))}
            ),
            (
                "hdInsightClusters",
                s.keyed("hdInsightClusters", "hdi-spark", s.key_id("acr-cmk", OLD), identities=[uai]),
            ),
        )
    )
    first = rotate(stack)
    assert first.status == "succeeded"

    vault = s.key_id("acr-cmk").split("/keys/")[0]
    body = {"vaultUri": vault, "keyName": "acr-cmk", "keyVersion": OLD}
    deployer_arm().write("POST", cluster + "/rotatediskencryptionkey", "2021-06-01", body)

    second = rotate(stack)
    step = next(st for st in second.steps if st.target == cluster)
    assert (step.action, step.from_version, step.to_version) == ("update", OLD, NEW)
    assert f"now on {OLD}, changed by: {DEPLOYER}" in step.message
    [incident] = audit_of(stack, "consumer-reverted")
    changed = incident["detail"]["changedBy"]
    assert changed["caller"] == DEPLOYER
    assert changed["operation"] == "Microsoft.HDInsight/clusters/rotatediskencryptionkey/action"
