"""reconcile against the emulator and Azurite: mixed fleets, idempotency, faults, blocking."""

from __future__ import annotations

from typing import Any

import pytest

from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.model.results import RunResult
from tests import scenarios as s
from tests.support.runs import by_name

OLD, MID, NEW = s.vid("old"), s.vid("mid"), s.vid("new")
ACR_KEY = s.key_id("acr-cmk")


def acr_key(*extra: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return s.key(
        s.version("old", created="-300d", exp="+65d"),
        s.version("mid", created="-100d"),
        s.version("new", created="-1h"),
        *extra,
        **kwargs,
    )


def run(stack, key: str = ACR_KEY, **fields: Any) -> RunResult:
    request = new_request(parse_key_id(key), "cli", "pytest", **fields)
    return stack.service().reconciler.run(request)


def registry_keys(stack) -> dict[str, str]:
    return {r["id"].rsplit("/", 1)[1]: r["keyId"] for r in stack.admin.state()["registries"]}


def test_mixed_fleet_across_subscriptions_groups_and_pages(stack) -> None:
    stack.admin.configure(armPageSize=2)  # every list takes several pages
    stack.load(
        s.scenario(
            {"acr-cmk": acr_key(), "other": s.key(s.version("o1"))},
            registries=[
                s.registry("reg1", s.key_id("acr-cmk", OLD)),
                s.registry("reg2", s.key_id("acr-cmk", MID), rg="rg-two"),
                s.registry("reg3", s.key_id("acr-cmk", OLD), sub=s.SUB_B),
                s.registry(
                    "reg4", s.key_id("ACR-CMK", MID).replace("contoso-cmk", "CONTOSO-CMK"), sub=s.SUB_B
                ),
                s.registry("regless", ACR_KEY),
                s.registry("regother", s.key_id("other", s.vid("o1"))),
                s.registry("regcur", s.key_id("acr-cmk", NEW)),
                s.registry("regoff", s.key_id("acr-cmk", OLD), tags={"cmk-rotation": "off"}),
                s.registry("plain", None),
            ],
            batch_accounts=[
                s.batch("batch1", s.key_id("acr-cmk", MID), sub=s.SUB_B),
                s.batch("batchless", ACR_KEY),
            ],
            groups=[s.group("grp1", "acr-cmk", OLD)],
        )
    )
    result = run(stack)
    named = by_name(result)
    assert set(named) == {
        "reg1",
        "reg2",
        "reg3",
        "reg4",
        "regless",
        "regcur",
        "regoff",
        "batch1",
        "batchless",
        "grp1",
    }
    assert {n for n, st in named.items() if st.outcome == "verified"} == {
        "reg1",
        "reg2",
        "reg3",
        "reg4",
        "batch1",
    }
    assert named["regless"].action == named["batchless"].action == "auto-rotating"
    assert named["regcur"].action == "already-current" and named["regoff"].action == "opted-out"
    assert named["grp1"].action == "redeploy-required"
    assert result.status == "needs-attention" and result.exit_code == 3
    keys = registry_keys(stack)
    assert all(keys[n].endswith(NEW) for n in ("reg1", "reg2", "reg3", "reg4"))
    assert keys["regoff"].endswith(OLD) and keys["regother"].endswith(s.vid("o1"))
    batch = {b["id"].rsplit("/", 1)[1]: b["keyId"] for b in stack.admin.state()["batchAccounts"]}
    assert batch["batch1"].endswith(NEW) and batch["batchless"] == ACR_KEY
    # Exactly one write per updated resource, none to anything current, opted out or versionless.
    patched = sorted(c["path"].rsplit("/", 1)[1] for c in stack.writes("PATCH"))
    assert patched == ["batch1", "reg1", "reg2", "reg3", "reg4"]
    # Paging really happened: with 2 per page, listing SUB_A's 7 registries took 4 GETs.
    list_path = f"/subscriptions/{s.SUB_A}/providers/Microsoft.ContainerRegistry/registries"
    pages = [c for c in stack.admin.calls()["calls"] if c["method"] == "GET" and c["path"] == list_path]
    assert len(pages) == 4


def test_second_run_and_duplicate_events_write_nothing(stack) -> None:
    stack.load(s.scenario({"acr-cmk": acr_key()}, registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))]))
    first = run(stack, event_id="e1", event_version=NEW)
    assert first.status == "succeeded"
    stack.admin.clear_calls()
    again = run(stack, event_id="e1", event_version=NEW)
    late = run(stack, event_id="e0", event_version=MID)  # an older version's event arriving late
    assert again.status == late.status == "succeeded"
    assert [st.action for st in again.steps + late.steps] == ["already-current", "already-current"]
    assert stack.writes("PATCH") == []
    assert registry_keys(stack)["reg1"].endswith(NEW)  # never moved back to the event's older version


def test_throttling_and_server_errors_are_retried_to_convergence(stack) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": acr_key()},
            registries=[s.registry(f"reg{i}", s.key_id("acr-cmk", OLD)) for i in range(4)],
            batch_accounts=[s.batch("batch1", s.key_id("acr-cmk", OLD))],
        )
    )
    stack.admin.add_fault(
        method="PATCH",
        host="management.azure.com",
        pathRegex="registries/reg[01]$",
        status=429,
        retryAfter=0,
        count=3,
    )
    stack.admin.add_fault(
        method="PATCH", host="management.azure.com", pathRegex="batchAccounts", status=503, count=2
    )
    stack.admin.add_fault(
        method="GET", host="contoso-cmk.vault.azure.net", pathRegex="/versions", status=503, count=1
    )
    result = run(stack)
    assert result.status == "succeeded", result.to_dict()
    assert all(st.outcome == "verified" for st in result.steps)
    assert max(st.attempts for st in result.steps) >= 2
    statuses = stack.admin.calls()["byStatus"]
    assert statuses.get("429", 0) == 3 and statuses.get("503", 0) == 3
    records, _ = stack.service().audit.query(run=result.run_id, top=500)
    assert sum(1 for r in records if r["kind"] == "apply-retry") >= 3


def test_permanent_failure_on_one_target_does_not_stop_the_others(stack) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": acr_key()},
            registries=[s.registry(f"reg{i}", s.key_id("acr-cmk", OLD)) for i in range(3)],
        )
    )
    stack.admin.add_fault(method="PATCH", pathRegex="registries/reg1$", status=403)
    result = run(stack)
    named = by_name(result)
    assert named["reg1"].outcome == "failed" and named["reg1"].attempts == 1
    assert named["reg1"].error_code == "AuthorizationFailed" and "rotation role" in named["reg1"].hint
    # ARM's message names the RBAC action and the scope, as the real one does
    assert "perform action 'Microsoft.ContainerRegistry/registries/write' over scope '/subscriptions/" in (
        named["reg1"].error
    )
    assert named["reg0"].outcome == named["reg2"].outcome == "verified"
    assert result.status == "failed" and result.exit_code == 4
    keys = registry_keys(stack)
    assert keys["reg1"].endswith(OLD) and keys["reg0"].endswith(NEW)


def test_cross_service_rejection_is_reported_not_retried(stack) -> None:
    """The registry's identity lost its access to the key: nothing in ARM shows it, the registry
    service refuses the update; the step fails once with a hint, the registry keeps its version."""
    scenario = s.scenario(
        {"acr-cmk": acr_key()},
        registries=[
            s.registry("reg1", s.key_id("acr-cmk", OLD)),
            s.registry("reg2", s.key_id("acr-cmk", OLD), identity=s.identity_id("uai-ok")),
        ],
    )
    scenario["vaults"]["contoso-cmk"]["deniedIdentities"] = [s.identity_id("uai-acr")]
    stack.load(scenario)
    result = run(stack)
    named = by_name(result)
    assert (named["reg1"].outcome, named["reg1"].attempts) == ("failed", 1)
    assert named["reg1"].error_code == "KeyVaultAccessFailed"
    assert "Key Vault Crypto Service Encryption User" in named["reg1"].hint
    assert named["reg2"].outcome == "verified"
    assert registry_keys(stack)["reg1"].endswith(OLD)
    assert [c["path"].rsplit("/", 1)[1] for c in stack.writes("PATCH")].count("reg1") == 1


def test_identity_not_assigned_is_blocked_before_any_write(stack) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": acr_key()}, registries=[s.registry("reg1", s.key_id("acr-cmk", OLD), identities=[])]
        )
    )
    result = run(stack)
    [step] = result.steps
    assert (step.action, step.reason) == ("blocked", "identity-not-assigned")
    assert stack.writes("PATCH") == [] and result.exit_code == 3


def test_failed_long_running_operation_leaves_the_old_version(stack) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": acr_key()},
            registries=[
                s.registry("reg1", s.key_id("acr-cmk", OLD)),
                s.registry("reg2", s.key_id("acr-cmk", OLD)),
            ],
        )
    )
    stack.admin.add_fault(method="PATCH", pathRegex="registries/reg1$", lroResult="Failed")
    result = run(stack)
    named = by_name(result)
    assert named["reg1"].outcome == "failed" and named["reg2"].outcome == "verified"
    assert registry_keys(stack)["reg1"].endswith(OLD)


def test_version_states_newer_disabled_expired(stack) -> None:
    newest_ec_like = s.version("future", created="-1m", nbf="+10d")  # newer but not yet valid
    stack.load(
        s.scenario(
            {
                "acr-cmk": s.key(
                    s.version("old", created="-300d", exp="-2d"),
                    s.version("mid", created="-100d", enabled=False),
                    s.version("new", created="-1h"),
                    newest_ec_like,
                    s.version("off", created="-1m", enabled=False),  # newest, disabled on purpose
                )
            },
            registries=[
                s.registry("expired", s.key_id("acr-cmk", OLD)),
                s.registry("disabled", s.key_id("acr-cmk", MID)),
                s.registry("newer", s.key_id("acr-cmk", s.vid("future"))),
                s.registry("newer-disabled", s.key_id("acr-cmk", s.vid("off"))),
            ],
        )
    )
    result = run(stack)
    named = by_name(result)
    assert (named["expired"].action, named["expired"].outcome) == ("update", "verified")
    assert named["expired"].reason == "current-version-expired"
    assert (named["disabled"].action, named["disabled"].reason) == ("blocked", "current-version-disabled")
    assert named["newer"].action == "newer-than-desired"
    # newer than the desired version but disabled: someone's decision, not a version to wait on
    assert (named["newer-disabled"].action, named["newer-disabled"].reason) == (
        "blocked",
        "current-version-disabled",
    )
    assert result.desired_version == NEW
    records, _ = stack.service().audit.query(run=result.run_id, top=500)
    assert any(r["kind"] == "incident" and r["target"].endswith("/expired") for r in records)


def test_no_usable_version_blocks_everything(stack) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-300d"), kty="EC")},
            registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))],
        )
    )
    result = run(stack)
    [step] = result.steps
    assert (step.action, step.reason) == ("blocked", "key-type-unsupported")


def test_targets_limit_the_run(stack) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": acr_key()},
            registries=[
                s.registry("reg1", s.key_id("acr-cmk", OLD)),
                s.registry("reg2", s.key_id("acr-cmk", OLD)),
            ],
        )
    )
    result = run(stack, targets=(s.registry_id("reg2"), s.batch_id("nope")))
    assert [st.target for st in result.steps] == [s.registry_id("reg2")]
    assert any("does not use" in note for note in result.notes)
    keys = registry_keys(stack)
    assert keys["reg2"].endswith(NEW) and keys["reg1"].endswith(OLD)


def test_dry_run_plans_and_writes_nothing(stack) -> None:
    stack.load(s.scenario({"acr-cmk": acr_key()}, registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))]))
    result = run(stack, dry_run=True)
    assert [st.outcome for st in result.steps] == ["planned"]
    assert stack.writes("PATCH") == [] and registry_keys(stack)["reg1"].endswith(OLD)


def test_unreachable_key_vault_fails_with_exit_5(stack) -> None:
    stack.load(s.scenario({"acr-cmk": acr_key()}, registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))]))
    stack.admin.add_fault(host="contoso-cmk.vault.azure.net", drop=True)
    result = run(stack)
    assert result.status == "failed" and result.exit_code == 5 and result.steps == []
    assert stack.writes("PATCH") == []


def test_time_budget_stops_starting_new_work(stack) -> None:
    stack.set(ROTATION_TIME_BUDGET_SECONDS="5", ROTATION_CONCURRENCY="1")
    stack.load(
        s.scenario(
            {"acr-cmk": acr_key()},
            registries=[s.registry(f"reg{i}", s.key_id("acr-cmk", OLD)) for i in range(4)],
        )
    )
    stack.admin.add_fault(method="PATCH", host="management.azure.com", latencyMs=2500)
    result = run(stack)
    outcomes = sorted(st.outcome for st in result.steps)
    assert "verified" in outcomes and "skipped" in outcomes
    assert any(st.error_code == "TimeBudgetExhausted" for st in result.steps)
    assert result.status == "interrupted" and result.interrupted == "TimeBudgetExhausted"


class TestContainerGroupRedeploy:
    def test_redeploy_recreates_the_group_on_the_new_version(self, stack) -> None:
        stack.set(ROTATION_CONTAINER_GROUP_POLICY="redeploy")
        stack.load(
            s.scenario(
                {"acr-cmk": acr_key()},
                groups=[
                    s.group("grp1", "acr-cmk", OLD),
                    s.group("secret", "acr-cmk", OLD, secure=True),
                    s.group("noid", "acr-cmk", OLD, identity=s.identity_id("uai-x")),
                ],
            )
        )
        # noid: its encryption identity is not among the group's identities
        scenario = stack.admin.state()
        for group in scenario["containerGroups"]:
            if group["id"].endswith("/noid"):
                group["identities"] = [s.identity_id("uai-other")]
        stack.load(scenario)
        result = run(stack)
        named = by_name(result)
        assert named["grp1"].outcome == "verified", named["grp1"]
        assert (named["secret"].action, named["secret"].reason) == ("blocked", "spec-not-reconstructible")
        assert (named["noid"].action, named["noid"].reason) == ("blocked", "identity-not-assigned")
        groups = {g["id"].rsplit("/", 1)[1]: g for g in stack.admin.state()["containerGroups"]}
        assert groups["grp1"]["keyVersion"] == NEW and groups["secret"]["keyVersion"] == OLD
        assert groups["grp1"]["containers"][0]["properties"]["image"].startswith("mcr.microsoft.com/")
        deletes = [c for c in stack.admin.calls()["calls"] if c["method"] == "DELETE"]
        assert [c["path"].rsplit("/", 1)[1] for c in deletes] == ["grp1"]
        blobs = stack.service().clients.blobs().get_container_client("rotation-redeploy")
        assert list(blobs.list_blobs()) == []  # the saved spec is dropped once verified

    def test_redeploy_keeps_the_fields_it_does_not_know(self, stack) -> None:
        """The emulator keeps what it does not model, so a redeploy that dropped a field of the
        group (its zones, its confidential computing policy) would show here. (An extension's
        protectedSettings, which a GET hides, make a group not reconstructible.)"""
        stack.set(ROTATION_CONTAINER_GROUP_POLICY="redeploy")
        extra = {"confidentialComputeProperties": {"ccePolicy": "eyJhbGxvdyI6MX0="}}
        group = {**s.group("grp1", "acr-cmk", OLD), "zones": ["3"], "properties": extra}
        stack.load(s.scenario({"acr-cmk": acr_key()}, groups=[group]))
        [step] = run(stack).steps
        assert step.outcome == "verified", step
        [after] = stack.admin.state()["containerGroups"]
        assert after["keyVersion"] == NEW
        assert (after["zones"], after["properties"]) == (["3"], extra)

    def test_a_group_with_secure_values_is_reported_for_a_hand_redeploy_by_default(self, stack) -> None:
        stack.load(
            s.scenario({"acr-cmk": acr_key()}, groups=[s.group("secret", "acr-cmk", OLD, secure=True)])
        )
        result = run(stack)
        [step] = result.steps
        assert (step.action, step.reason, step.outcome) == (
            "redeploy-required",
            "report-only-policy",
            "skipped",
        )
        assert "secure values" in step.message and "by hand" in step.message
        assert result.exit_code == 3
        assert [c for c in stack.admin.calls()["calls"] if c["method"] in ("PUT", "DELETE")] == []

    def test_interrupted_redeploy_is_finished_by_the_next_run(self, stack) -> None:
        stack.set(ROTATION_CONTAINER_GROUP_POLICY="redeploy")
        stack.load(s.scenario({"acr-cmk": acr_key()}, groups=[s.group("grp1", "acr-cmk", OLD)]))
        stack.admin.add_fault(method="PUT", pathRegex="containerGroups/grp1$", status=500)
        first = run(stack)
        assert by_name(first)["grp1"].outcome == "failed"
        assert stack.admin.state()["containerGroups"] == []  # deleted, create failed: the spec is saved
        blobs = stack.service().clients.blobs().get_container_client("rotation-redeploy")
        assert len(list(blobs.list_blobs())) == 1
        stack.admin.clear_faults()
        second = run(stack)
        assert by_name(second)["grp1"].outcome == "verified", second.to_dict()
        [group] = stack.admin.state()["containerGroups"]
        assert group["keyVersion"] == NEW
        assert list(blobs.list_blobs()) == []


@pytest.mark.parametrize("kind", ["registry", "batch"])
def test_run_record_and_audit_trail(stack, kind: str) -> None:
    consumer = (
        s.registry("res1", s.key_id("acr-cmk", OLD))
        if kind == "registry"
        else s.batch("res1", s.key_id("acr-cmk", OLD))
    )
    stack.load(
        s.scenario(
            {"acr-cmk": acr_key()},
            registries=[consumer] if kind == "registry" else [],
            batch_accounts=[consumer] if kind == "batch" else [],
        )
    )
    result = run(stack)
    service = stack.service()
    record = service.runs.get(result.run_id)
    assert record["status"] == "succeeded" and record["desiredVersion"] == NEW
    assert [st["outcome"] for st in record["steps"]] == ["verified"]
    records, _ = service.audit.query(key=ACR_KEY, top=100)
    kinds = [r["kind"] for r in records if r["runId"] == result.run_id]
    for expected in ("run-started", "plan", "verified", "run-finished"):
        assert expected in kinds
    # One record per written target: its outcome, with the plan's reason and how it got there
    # (the plan document, pinned by the `plan` record, holds the decision).
    [outcome] = [r for r in records if r["runId"] == result.run_id and r.get("target")]
    assert outcome["kind"] == "verified" and (outcome["fromVersion"], outcome["toVersion"]) == (OLD, NEW)
    assert outcome["detail"] == {"planReason": "behind-desired", "attempts": 1, "writes": 1}
    assert all(set(r.get("detail") or {}).isdisjoint({"n", "e", "key_ops", "key"}) for r in records)


def test_outcome_publish_is_retried_by_the_one_retry_layer_only(stack) -> None:
    topic = "https://rotation-outcomes.westeurope-1.eventgrid.azure.net/api/events"
    stack.set(ROTATION_OUTCOME_TOPIC_ENDPOINT=topic, ROTATION_RETRY_ATTEMPTS="3")
    stack.load(s.scenario({"acr-cmk": acr_key()}, registries=[s.registry("reg1", s.key_id("acr-cmk", NEW))]))
    stack.admin.add_fault(host="*.eventgrid.azure.net", status=503)
    stack.admin.clear_calls()
    result = run(stack)
    assert result.status == "succeeded"  # a failed publish never fails the run
    posts = [c for c in stack.admin.calls()["calls"] if c["host"].endswith(".eventgrid.azure.net")]
    assert len(posts) == 3  # the run's three attempts, none multiplied by SDK retries
    kinds = [r["kind"] for r in stack.service().audit.query(run=result.run_id, top=100)[0]]
    assert "outcome-publish-failed" in kinds
