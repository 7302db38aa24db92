"""Discovery through Resource Graph (ROTATION_DISCOVERY): one query across subscriptions for the
kinds read from the resource alone, paged by `$skipToken`, finds what the ARM lists find; SQL
servers (whose row does not name their protector's key) and container groups are still listed
through ARM; every target is still read through ARM before its write."""

from __future__ import annotations

from typing import Any

import pytest

from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from tests import scenarios as s
from tests.support.commands import cli, invoke

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("cmk")
GRAPH = "/providers/microsoft.resourcegraph/resources"


def estate(storage_accounts: int = 3) -> dict[str, Any]:
    cmk = s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))
    return s.scenario(
        {"cmk": cmk},
        registries=[s.registry("reg-a", s.key_id("cmk", OLD)), s.registry("reg-b", KEY, sub=s.SUB_B)],
        batch_accounts=[s.batch("batch-b", s.key_id("cmk", OLD), sub=s.SUB_B)],
        storage_accounts=[s.storage(f"st{i:04d}", s.key_id("cmk", OLD)) for i in range(storage_accounts)],
        encryption_sets=[s.encryption_set("des-a", s.key_id("cmk", OLD))],
        sql_servers=[s.sql_server("sql-a", s.key_id("cmk", OLD))],
        groups=[s.group("grp-a", "cmk", OLD)],
    )


def plan(stack) -> dict[str, str]:
    result = stack.service().reconciler.plan(parse_key_id(KEY))
    return {step.target.rsplit("/", 1)[1]: step.action for step in result.steps}


def test_resource_graph_finds_what_the_arm_lists_find_in_fewer_calls(stack) -> None:
    stack.load(estate())
    stack.set(ROTATION_DISCOVERY="arm")
    by_arm = plan(stack)
    arm_calls = stack.admin.calls()["calls"]
    stack.admin.clear_calls()
    stack.set(ROTATION_DISCOVERY="resourcegraph")
    by_graph = plan(stack)
    graph_calls = stack.admin.calls()["calls"]
    assert by_graph == by_arm and len(by_graph) == 9  # reg-b is versionless: auto-rotating
    assert [c["method"] for c in graph_calls if c["path"].lower() == GRAPH] == ["POST"]
    listed = {
        c["path"].lower()
        for c in graph_calls
        if c["method"] == "GET"
        and c["path"].lower().startswith("/subscriptions/")
        and "/resourcegroups/" not in c["path"].lower()
    }
    # still listed through ARM: SQL servers and container groups, per subscription
    assert all("microsoft.sql/servers" in p or "microsoft.containerinstance" in p for p in listed), listed
    assert len(graph_calls) < len(arm_calls)


def test_a_graph_answer_over_a_thousand_rows_is_read_page_by_page(stack) -> None:
    stack.load(estate(storage_accounts=1100))
    stack.set(ROTATION_DISCOVERY="resourcegraph")
    found = plan(stack)
    assert sum(1 for name in found if name.startswith("st")) == 1100
    assert sum(1 for c in stack.admin.calls()["calls"] if c["path"].lower() == GRAPH) == 2


def test_a_run_discovered_through_the_graph_reads_each_target_through_arm_before_writing(stack) -> None:
    stack.load(estate())
    stack.set(ROTATION_DISCOVERY="resourcegraph")
    result = stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest"))
    moved = {step.target.rsplit("/", 1)[1] for step in result.steps if step.outcome == "verified"}
    assert {"reg-a", "batch-b", "st0000", "des-a", "sql-a"} <= moved
    calls = stack.admin.calls()["calls"]
    for name in ("reg-a", "st0000"):
        reads = [
            i for i, c in enumerate(calls) if c["method"] == "GET" and c["path"].lower().endswith("/" + name)
        ]
        [write] = [
            i
            for i, c in enumerate(calls)
            if c["method"] == "PATCH" and c["path"].lower().endswith("/" + name)
        ]
        assert reads and reads[0] < write, f"{name} was written without an ARM read first"


def test_the_graph_failing_is_a_discovery_error_and_the_arm_listed_kinds_still_plan(stack) -> None:
    stack.load(estate())
    stack.set(ROTATION_DISCOVERY="resourcegraph")
    stack.admin.add_fault(method="POST", pathRegex="(?i)microsoft.resourcegraph", status=403)
    result = stack.service().reconciler.plan(parse_key_id(KEY))
    assert {step.target.rsplit("/", 1)[1] for step in result.steps} == {"sql-a", "grp-a"}
    assert {e["scope"] for e in result.discovery_errors} == {"resourcegraph"}


def test_plan_and_inventory_through_the_graph_as_a_user_calls_them(stack) -> None:
    stack.load(estate())
    stack.set(ROTATION_DISCOVERY="resourcegraph")
    code, planned = cli("plan", KEY)
    assert code == 3  # the container group needs a person
    assert {step["target"].rsplit("/", 1)[1] for step in planned["steps"]} >= {"reg-a", "st0000", "sql-a"}
    code, table = invoke("plan", KEY, "--all")
    assert code == 3 and "reg-a" in table and "st0002" in table
    code, rows = cli("inventory", "--key", KEY)
    assert code == 0, rows
    graph_calls = [c for c in stack.admin.calls()["calls"] if c["path"].lower() == GRAPH]
    assert len(graph_calls) == 3  # one query per command: JSON plan, table plan, inventory
