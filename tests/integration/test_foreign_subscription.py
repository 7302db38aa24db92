"""Issue 21 item 2: an ARM list answer for an allowed subscription that names a resource in
another subscription. The discovered id is checked exactly like a requested one: counted and
reported (plan, run, inventory, audit) as `blocked: subscription-not-allowed`, never written;
and the apply step checks the target's subscription again right before the write."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import function_app
from devstack.functions_host import http_request
from rotation.azure.kinds import ApplyContext
from rotation.model.decisions import UPDATE
from rotation.model.ids import parse_key_id
from rotation.storage.audit import AuditTrail
from tests import scenarios as s
from tests.integration.cli_support import run

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
SUB_C = "00000000-0000-0000-0000-00000000000c"  # not in ROTATION_SUBSCRIPTIONS
KEY = s.key_id("acr-cmk")
FOREIGN = s.registry_id("foreign", SUB_C)


def estate(stack) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
            registries=[
                s.registry("mine", s.key_id("acr-cmk", OLD)),
                s.registry("foreign", s.key_id("acr-cmk", OLD), sub=SUB_C),
            ],
        )
    )
    stack.admin.configure(listsAlsoAnswer=[SUB_C])  # SUB_A's list now names the foreign registry


def _by_name(steps: list[dict]) -> dict[str, dict]:
    return {st["target"].rsplit("/", 1)[1]: st for st in steps}


def _foreign_writes(stack) -> list[dict]:
    return [c for c in stack.writes() if SUB_C in c["path"]]


def test_the_emulator_list_names_the_foreign_resource(stack) -> None:
    estate(stack)
    arm = stack.service().clients.arm()
    listed = [
        r["id"]
        for r in arm.list_by_subscription(s.SUB_A, "Microsoft.ContainerRegistry/registries", "2025-11-01")
    ]
    assert FOREIGN.lower() in [i.lower() for i in listed]


def test_http_plan_shows_it_blocked(stack) -> None:
    estate(stack)
    body = json.dumps({"keyId": KEY}).encode()
    response = function_app.plan_rotation(http_request("POST", "/api/rotations/plan", body=body))
    assert response.status_code == 200
    plan = json.loads(response.get_body())
    steps = _by_name(plan["steps"])
    assert (steps["mine"]["action"], steps["foreign"]["action"]) == ("update", "blocked")
    assert steps["foreign"]["reason"] == "subscription-not-allowed"
    assert SUB_C in steps["foreign"]["message"] and plan["summary"]["blocked"] == 1


@pytest.mark.parametrize("output", ["table", "json"])
def test_cli_rotate_never_writes_it_and_says_so(stack, output: str) -> None:
    estate(stack)
    result = run("-o", output, "rotate", KEY, "--yes")
    assert result.exit_code == 3, result.output  # converged, a person must look at the stranger
    assert _foreign_writes(stack) == [] and len(stack.writes()) == 1
    if output == "json":
        steps = _by_name(json.loads(result.output)["steps"])
        assert (steps["mine"]["outcome"], steps["foreign"]["outcome"]) == ("verified", "skipped")
        assert steps["foreign"]["reason"] == "subscription-not-allowed"
    else:
        assert "subscription-not-allowed" in result.output
    records, _ = stack.service().audit.query(top=200)
    [audited] = [r for r in records if r["kind"] == "plan-step" and r["target"].lower() == FOREIGN.lower()]
    assert audited["reason"] == "subscription-not-allowed"
    registries = {r["id"].rsplit("/", 1)[1]: r["keyId"] for r in stack.admin.state()["registries"]}
    assert registries["foreign"].endswith(OLD) and registries["mine"].endswith(NEW)


def test_inventory_lists_it_blocked(stack) -> None:
    estate(stack)
    result = run("-o", "json", "inventory")
    assert result.exit_code in (0, 3), result.output
    rows = {r["resourceId"].rsplit("/", 1)[1]: r for r in json.loads(result.output)["consumers"]}
    assert (rows["foreign"]["action"], rows["foreign"]["reason"]) == ("blocked", "subscription-not-allowed")


def test_apply_refuses_a_foreign_target_right_before_the_write(stack) -> None:
    # Defence in depth: were the plan ever to say `update` for it (a planner bug, a forged
    # plan), the apply step still refuses, and nothing reaches ARM for that resource.
    estate(stack)
    service = stack.service()
    reconciler = service.reconciler
    key = parse_key_id(KEY)
    plan = reconciler.plan(key)
    forged = replace(plan, steps=tuple(replace(st, action=UPDATE) for st in plan.steps))
    trail = AuditTrail(service.audit, run_id="forged-plan", key=key, actor="pytest")
    applied = reconciler.applier.apply(forged, ApplyContext("forged-plan", "pytest"), trail, None, None)
    trail.flush()
    results = {st.target.rsplit("/", 1)[1]: st for st in applied.steps}
    assert results["mine"].outcome == "verified"
    assert (results["foreign"].outcome, results["foreign"].error_code) == ("failed", "SubscriptionNotAllowed")
    assert _foreign_writes(stack) == []
    records, _ = service.audit.query(top=100)
    [refused] = [
        r for r in records if r["kind"] == "apply-outcome" and r["target"].lower() == FOREIGN.lower()
    ]
    assert refused["errorCode"] == "SubscriptionNotAllowed"
