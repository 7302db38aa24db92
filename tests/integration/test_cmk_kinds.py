"""Storage accounts, Disk Encryption Sets and SQL servers through reconcile: update and verify,
the self-rotating ones left alone, each kind's blocked reasons and the service's refusals."""

from __future__ import annotations

from typing import Any

import pytest

from rotation.core.reconcile import RunResult
from rotation.model.ids import parse_key_id
from rotation.storage.queue import new_request
from tests import scenarios as s

OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("data-cmk")


def data_key(**kwargs: Any) -> dict[str, Any]:
    return s.key(s.version("old", created="-300d"), s.version("new", created="-1h"), **kwargs)


def run(stack, key: str = KEY) -> RunResult:
    return stack.service().reconciler.run(new_request(parse_key_id(key), "cli", "pytest"))


def by_name(result: RunResult) -> dict[str, Any]:
    return {step.target.rsplit("/", 1)[1]: step for step in result.steps}


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
    writes = [(c["method"], c["path"].split("/providers/", 1)[1]) for c in stack.admin.calls()["calls"]
              if c["method"] in ("PUT", "PATCH")]
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
