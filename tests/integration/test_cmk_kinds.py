"""Storage accounts, Disk Encryption Sets and SQL servers through reconcile: update and verify,
the self-rotating ones left alone, each kind's blocked reasons and the service's refusals."""

from __future__ import annotations

from typing import Any

import pytest

from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.model.results import RunResult
from tests import scenarios as s
from tests.scenarios import data_key
from tests.support.runs import by_name

OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("data-cmk")


def run(stack, key: str = KEY) -> RunResult:
    return stack.service().reconciler.run(new_request(parse_key_id(key), "cli", "pytest"))


def held_keys(stack) -> dict[str, str]:
    state = stack.admin.state()
    held = {a["id"].rsplit("/", 1)[1]: a["keyId"] for a in state["storageAccounts"]}
    held.update({d["id"].rsplit("/", 1)[1]: d["keyId"] for d in state["diskEncryptionSets"]})
    held.update({q["id"].rsplit("/", 1)[1]: q["keyId"] for q in state["sqlServers"]})
    return held


def estate(**kwargs: Any) -> dict[str, Any]:
    return s.scenario(
        {"data-cmk": data_key(**kwargs)},
        storage_accounts=[
            s.storage("stpinned", s.key_id("data-cmk", OLD)),
            s.storage("stfollows", KEY),
        ],
        encryption_sets=[
            s.encryption_set("des-pinned", s.key_id("data-cmk", OLD)),
            s.encryption_set("des-auto", s.key_id("data-cmk", OLD), auto=True),
        ],
        sql_servers=[
            s.sql_server("sql-pinned", s.key_id("data-cmk", OLD)),
            s.sql_server("sql-auto", s.key_id("data-cmk", OLD), auto=True),
        ],
    )


def test_pinned_consumers_of_every_kind_move_and_self_rotating_ones_are_left_alone(stack) -> None:
    stack.load(estate())
    result = run(stack)
    steps = by_name(result)
    assert {n: (st.kind, st.action, st.outcome) for n, st in steps.items()} == {
        "stpinned": ("storage", "update", "verified"),
        "stfollows": ("storage", "auto-rotating", "skipped"),
        "des-pinned": ("diskencryptionset", "update", "verified"),
        "des-auto": ("diskencryptionset", "auto-rotating", "skipped"),
        "sql-pinned": ("sqlserver", "update", "verified"),
        "sql-auto": ("sqlserver", "auto-rotating", "skipped"),
    }
    assert result.status == "succeeded" and result.exit_code == 0
    held = held_keys(stack)
    assert held["stpinned"] == held["des-pinned"] == held["sql-pinned"] == s.key_id("data-cmk", NEW)
    assert held["stfollows"] == KEY and held["sql-auto"] == s.key_id("data-cmk", OLD)
    # SQL: the new server key was added, the protector points at it, the old key stays.
    [sql] = [q for q in stack.admin.state()["sqlServers"] if q["id"].endswith("sql-pinned")]
    assert set(sql["serverKeys"]) == {f"contoso-cmk_data-cmk_{OLD}", f"contoso-cmk_data-cmk_{NEW}"}
    writes = [
        (c["method"], c["path"].split("/providers/", 1)[1])
        for c in stack.admin.calls()["calls"]
        if c["method"] in ("PUT", "PATCH")
    ]
    assert sorted(writes) == sorted(
        [
            ("PATCH", "Microsoft.Storage/storageAccounts/stpinned"),
            ("PATCH", "Microsoft.Compute/diskEncryptionSets/des-pinned"),
            ("PUT", f"Microsoft.Sql/servers/sql-pinned/keys/contoso-cmk_data-cmk_{NEW}"),
            ("PUT", "Microsoft.Sql/servers/sql-pinned/encryptionProtector/current"),
        ]
    )
    stack.admin.clear_calls()
    again = run(stack)
    assert {st.action for st in again.steps if st.target.endswith("pinned")} == {"already-current"}
    assert [c for c in stack.admin.calls()["calls"] if c["method"] in ("PUT", "PATCH")] == []


def one_of_each(key: str, **overrides: Any) -> dict[str, Any]:
    return {
        "storage_accounts": [s.storage("st1", key, **overrides.get("storage", {}))],
        "encryption_sets": [s.encryption_set("des1", key, **overrides.get("des", {}))],
        "sql_servers": [s.sql_server("sql1", key, **overrides.get("sql", {}))],
    }


def test_identity_not_assigned_blocks_each_kind_without_a_write(stack) -> None:
    stray = s.identity_id("uai-elsewhere")
    stack.load(
        s.scenario(
            {"data-cmk": data_key()},
            **one_of_each(
                s.key_id("data-cmk", OLD),
                storage={"identity": stray, "identities": [s.identity_id("uai-storage")]},
                des={"system_assigned": False},
                sql={"primary": stray, "identities": []},
            ),
        )
    )
    result = run(stack)
    assert {n: (st.action, st.reason) for n, st in by_name(result).items()} == dict.fromkeys(
        ("st1", "des1", "sql1"), ("blocked", "identity-not-assigned")
    )
    assert result.exit_code == 3 and stack.writes("PATCH") == stack.writes("PUT") == []


def test_sql_refuses_a_4096_bit_key_while_storage_and_disks_take_it(stack) -> None:
    big = data_key()
    big["size"] = 4096
    stack.load(s.scenario({"data-cmk": big}, **one_of_each(s.key_id("data-cmk", OLD))))
    steps = by_name(run(stack))
    assert (steps["sql1"].action, steps["sql1"].reason) == ("blocked", "key-type-unsupported")
    assert "SQL TDE accepts RSA 2048/3072" in steps["sql1"].message
    assert steps["st1"].outcome == steps["des1"].outcome == "verified"
    assert held_keys(stack)["sql1"] == s.key_id("data-cmk", OLD)


def test_a_consumer_on_a_disabled_version_is_left_for_a_person(stack) -> None:
    key = s.key(s.version("old", created="-300d", enabled=False), s.version("new", created="-1h"))
    stack.load(s.scenario({"data-cmk": key}, **one_of_each(s.key_id("data-cmk", OLD))))
    steps = by_name(run(stack))
    assert {(st.action, st.reason) for st in steps.values()} == {("blocked", "current-version-disabled")}
    assert stack.writes("PATCH") == stack.writes("PUT") == []


def test_vault_refusing_the_identity_fails_each_step_with_a_hint_and_moves_nothing(stack) -> None:
    scenario = s.scenario({"data-cmk": data_key()}, **one_of_each(s.key_id("data-cmk", OLD)))
    sql_principal = s.identity_id("uai-sql")
    scenario["vaults"][s.VAULT]["deniedIdentities"] = [s.identity_id("uai-storage"), sql_principal]
    scenario["diskEncryptionSets"][0]["systemPrincipalId"] = "5f3c9a1e-0000-4000-8000-00000000de50"
    scenario["vaults"][s.VAULT]["deniedIdentities"].append("5f3c9a1e-0000-4000-8000-00000000de50")
    stack.load(scenario)
    result = run(stack)
    steps = by_name(result)
    assert {n: st.outcome for n, st in steps.items()} == {"st1": "failed", "des1": "failed", "sql1": "failed"}
    assert steps["sql1"].error_code == "AzureKeyVaultMissingPermissions"
    assert "Key Vault Crypto Service Encryption User" in steps["sql1"].hint
    assert "403" in steps["st1"].error and "encryption.identity" in steps["st1"].hint
    assert "managed identity" in steps["des1"].hint
    assert result.exit_code == 4
    assert set(held_keys(stack).values()) == {s.key_id("data-cmk", OLD)}
    # A permanent refusal is not retried: one write attempt each (SQL stops at the server key).
    assert len(stack.writes("PATCH")) == 2 and len(stack.writes("PUT")) == 1


def test_throttling_and_server_errors_on_each_write_are_retried(stack) -> None:
    stack.load(s.scenario({"data-cmk": data_key()}, **one_of_each(s.key_id("data-cmk", OLD))))
    stack.admin.add_fault(method="PATCH", pathRegex="storageAccounts/st1$", status=429, retryAfter=0, count=2)
    stack.admin.add_fault(method="PATCH", pathRegex="diskEncryptionSets/des1$", status=503, count=1)
    stack.admin.add_fault(method="PUT", pathRegex="encryptionProtector/current$", status=500, count=1)
    stack.admin.add_fault(method="GET", pathRegex="servers/sql1/encryptionProtector", status=503, count=1)
    result = run(stack)
    assert {st.outcome for st in result.steps} == {"verified"} and result.exit_code == 0
    assert set(held_keys(stack).values()) == {s.key_id("data-cmk", NEW)}


@pytest.mark.parametrize(
    ("name", "method", "path"),
    [("des1", "PATCH", "diskEncryptionSets/des1$"), ("sql1", "PUT", "sql1/encryptionProtector/current$")],
)
def test_a_failed_long_running_write_fails_the_step_and_leaves_the_old_version(
    stack, name: str, method: str, path: str
) -> None:
    stack.load(s.scenario({"data-cmk": data_key()}, **one_of_each(s.key_id("data-cmk", OLD))))
    stack.admin.add_fault(method=method, pathRegex=path, lroResult="Failed", count=10)
    steps = by_name(run(stack))
    assert steps[name].outcome == "failed"
    assert held_keys(stack)[name] == s.key_id("data-cmk", OLD)
    others = {n for n in ("st1", "des1", "sql1") if n != name}
    assert {steps[n].outcome for n in others} == {"verified"}


def test_many_sql_servers_over_several_pages_are_all_read_with_their_protectors(stack) -> None:
    stack.admin.configure(armPageSize=3)
    servers = [s.sql_server(f"sql{i:02d}", s.key_id("data-cmk", OLD), auto=i % 5 == 0) for i in range(40)]
    stack.load(s.scenario({"data-cmk": data_key()}, sql_servers=servers))
    stack.admin.add_fault(method="GET", pathRegex="servers/sql07/encryptionProtector", status=503, count=1)
    result = run(stack)
    actions = {st.target.rsplit("/", 1)[1]: st.action for st in result.steps}
    assert len(actions) == 40 and result.exit_code == 0
    assert {n for n, a in actions.items() if a == "auto-rotating"} == {f"sql{i:02d}" for i in range(0, 40, 5)}
    calls = stack.admin.calls()["calls"]
    protector_reads = {
        c["path"]
        for c in calls
        if c["path"].endswith("/encryptionProtector/current") and c["method"] == "GET"
    }
    assert len(protector_reads) == 40
