"""Storage, Disk Encryption Set and SQL consumers through the production path (an Event Grid
delivery, the queue in Azurite, the queue function), replay after a refusal, and keys in
Managed HSM, whose only door is the sweep: Azure publishes no Event Grid events for HSM keys."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import function_app
from devstack.functions_host import deliver_event_grid, timer_request
from rotation.doors.cli import main
from tests import scenarios as s
from tests.scenarios import data_key
from tests.support.commands import cli

OLD, NEW = s.vid("old"), s.vid("new")


def mixed_estate(key_of: Any, pinned: str = OLD) -> dict[str, Any]:
    return {
        "registries": [s.registry("reg1", key_of(pinned))],
        "batch_accounts": [s.batch("batch1", key_of(pinned))],
        "storage_accounts": [s.storage("st1", key_of(pinned)), s.storage("stauto", key_of(None))],
        "encryption_sets": [
            s.encryption_set("des1", key_of(pinned)),
            s.encryption_set("desauto", key_of(OLD), auto=True),
        ],
        "sql_servers": [
            s.sql_server("sql1", key_of(pinned)),
            s.sql_server("sqlauto", key_of(OLD), auto=True),
        ],
    }


def held(stack) -> dict[str, str]:
    state = stack.admin.state()
    found: dict[str, str] = {}
    for section in ("registries", "batchAccounts", "storageAccounts", "diskEncryptionSets", "sqlServers"):
        found.update({r["id"].rsplit("/", 1)[1]: r["keyId"] for r in state[section]})
    return found


def drain(stack, **overrides: Any):
    dispatcher = stack.dispatcher(function_app.run_rotation, **overrides)
    stats = dispatcher.run_until_idle(timeout=90)
    dispatcher.close()
    return stats


def test_one_new_version_event_moves_every_pinned_consumer_whatever_its_kind(stack) -> None:
    stack.load(s.scenario({"data-cmk": data_key()}, **mixed_estate(lambda v: s.key_id("data-cmk", v))))
    event = s.event_grid_event("KeyNewVersionCreated", "data-cmk", NEW, event_id="mixed-1")
    assert deliver_event_grid(function_app.on_key_event, [event]) == [None]
    stats = drain(stack)
    assert stats.failures == [] and len(stats.invocations) == 1
    moved = {n for n, key in held(stack).items() if key == s.key_id("data-cmk", NEW)}
    assert moved == {"reg1", "batch1", "st1", "des1", "sql1", "desauto"}  # desauto: Azure moved it
    assert not [w for w in stack.writes() if w["path"].lower().endswith("/desauto")]  # never written
    assert held(stack)["stauto"] == s.key_id("data-cmk") and held(stack)["sqlauto"] == s.key_id(
        "data-cmk", OLD
    )
    records, _ = stack.service().audit.query(top=500)
    verified = {r["target"].rsplit("/", 1)[1] for r in records if r["kind"] == "verified"}
    assert {"st1", "des1", "sql1"} <= verified


@pytest.mark.parametrize(
    ("name", "method", "path"),
    [
        ("st1", "PATCH", "storageAccounts/st1$"),
        ("des1", "PATCH", "diskEncryptionSets/des1$"),
        ("sql1", "PUT", "servers/sql1/keys/"),
    ],
)
def test_refused_write_poisons_the_request_and_replay_after_the_fix_converges(
    stack, name: str, method: str, path: str
) -> None:
    stack.load(s.scenario({"data-cmk": data_key()}, **mixed_estate(lambda v: s.key_id("data-cmk", v))))
    stack.service()
    stack.admin.add_fault(method=method, pathRegex=path, status=403)  # the function lost its role
    event = s.event_grid_event("KeyNewVersionCreated", "data-cmk", NEW, event_id=f"refused-{name}")
    deliver_event_grid(function_app.on_key_event, [event])
    assert len(drain(stack, max_dequeue_count=2).poisoned) == 1
    assert held(stack)[name] == s.key_id("data-cmk", OLD)
    assert held(stack)["reg1"] == s.key_id("data-cmk", NEW)  # the others moved on the first attempt
    stack.admin.clear_faults()  # the role is restored
    code, outcomes = cli("replay", "--yes")
    assert code == 0 and [(o["action"], o["status"]) for o in outcomes] == [("replayed", "succeeded")]
    assert held(stack)[name] == s.key_id("data-cmk", NEW)


def test_vault_refusing_each_kinds_identity_poisons_then_replay_after_access_is_restored(stack) -> None:
    scenario = s.scenario({"data-cmk": data_key()}, **mixed_estate(lambda v: s.key_id("data-cmk", v)))
    principal = "5f3c9a1e-0000-4000-8000-00000000de51"
    for des in scenario["diskEncryptionSets"]:
        des["systemPrincipalId"] = principal
    scenario["vaults"][s.VAULT]["deniedIdentities"] = [
        s.identity_id("uai-storage"),
        s.identity_id("uai-sql"),
        principal,
    ]
    stack.load(scenario)
    stack.service()
    event = s.event_grid_event("KeyNewVersionCreated", "data-cmk", NEW, event_id="denied-kinds")
    deliver_event_grid(function_app.on_key_event, [event])
    assert len(drain(stack, max_dequeue_count=2).poisoned) == 1
    assert {held(stack)[n] for n in ("st1", "des1", "sql1")} == {s.key_id("data-cmk", OLD)}
    _, [item] = cli("deadletters", "list")
    assert "403 Forbidden" in item["cause"] and "(+2 more)" in item["cause"]  # all three refused
    state = stack.admin.state()
    state["vaults"][s.VAULT]["deniedIdentities"] = []  # access restored
    stack.load(state)
    code, outcomes = cli("replay", "--yes")
    assert code == 0 and [o["status"] for o in outcomes] == ["succeeded"]
    assert {held(stack)[n] for n in ("st1", "des1", "sql1")} == {s.key_id("data-cmk", NEW)}


def hsm_estate(stack, *, exp: str = "+265d", pinned: str = OLD) -> None:
    stack.set(ROTATION_ALLOWED_VAULTS=f"{s.VAULT_HOST},{s.HSM_HOST}")
    key = s.key(s.version("old", created="-300d"), s.version("new", created="-1h", exp=exp), kty="RSA-HSM")
    estate = mixed_estate(lambda v: s.hsm_key_id("hsm-cmk", v), pinned)
    del estate["registries"], estate["batch_accounts"]
    stack.load(s.scenario({}, hsm_keys={"hsm-cmk": key}, **estate))


def test_sweep_moves_consumers_of_a_managed_hsm_key_left_behind(stack) -> None:
    hsm_estate(stack)
    function_app.sweep_drift(timer_request())
    stats = drain(stack)
    assert stats.failures == [] and len(stats.invocations) == 1
    moved = {n for n, key in held(stack).items() if key == s.hsm_key_id("hsm-cmk", NEW)}
    assert moved == {"st1", "des1", "sql1", "desauto"}  # desauto follows the newest version itself
    [des] = [d for d in stack.admin.state()["diskEncryptionSets"] if d["id"].endswith("des1")]
    assert des["sourceVault"] is None  # a Managed HSM key names no vault resource
    [sql] = [q for q in stack.admin.state()["sqlServers"] if q["id"].endswith("sql1")]
    assert f"contoso-hsm_hsm-cmk_{NEW}" in sql["serverKeys"]
    hosts = {c["host"] for c in stack.admin.calls()["calls"]}
    assert s.HSM_HOST in hosts and s.VAULT_HOST not in hosts


def test_sweep_treats_an_hsm_key_near_expiry_as_near_expiry_and_makes_one_version(stack) -> None:
    hsm_estate(stack, exp="+10d", pinned=NEW)  # every consumer current, the newest version expiring
    function_app.sweep_drift(timer_request())
    stats = drain(stack)
    assert stats.failures == [] and len(stats.invocations) == 1
    versions = stack.admin.state()["managedHsms"][s.HSM]["keys"]["hsm-cmk"]["versions"]
    assert len(versions) == 3 and versions[-1]["exp"] is not None
    newest = s.hsm_key_id("hsm-cmk", versions[-1]["version"])
    assert {n for n, key in held(stack).items() if key == newest} == {"st1", "des1", "sql1", "desauto"}
    function_app.sweep_drift(timer_request())  # converged: the next sweep queues nothing
    assert drain(stack).invocations == []


def test_plan_over_http_and_the_cli_table_name_each_kind(stack) -> None:
    from tests.integration.test_functions import call

    stack.load(s.scenario({"data-cmk": data_key()}, **mixed_estate(lambda v: s.key_id("data-cmk", v))))
    status, plan, _ = call(
        function_app.plan_rotation, "POST", "/api/rotations/plan", {"keyId": s.key_id("data-cmk")}
    )
    assert status == 200
    kinds = {step["target"].rsplit("/", 1)[1]: (step["kind"], step["action"]) for step in plan["steps"]}
    assert kinds["st1"] == ("storage", "update") and kinds["stauto"] == ("storage", "auto-rotating")
    assert kinds["des1"] == ("diskencryptionset", "update") and kinds["sqlauto"] == (
        "sqlserver",
        "auto-rotating",
    )
    result = CliRunner().invoke(main, ["plan", s.key_id("data-cmk")], catch_exceptions=False)
    assert result.exit_code == 0 and "kind" in result.output and "storage" in result.output
    code, shown = cli("plan", s.key_id("data-cmk"))
    listed = [[step["kind"], step["target"]] for step in shown["steps"]]
    assert (
        code == 0
        and ["sqlserver", s.sql_id("sql1")] in listed
        and ["diskencryptionset", s.des_id("des1")] in listed
    )
    assert stack.writes("PATCH") == stack.writes("PUT") == []
