"""PostgreSQL and MySQL flexible servers on the local stack, through the doors users use: a
KeyNewVersionCreated event through the Event Grid door and the queue trigger, `POST
/api/rotations/plan`, the CLI's plan in table and JSON; the emulator answering both providers'
PATCH as their specs do (202, status at `azureAsyncOperation`); both URIs of a key moved in one
PATCH, a geo-backup key of another vault left alone; blocked and refused servers written never."""

from __future__ import annotations

from typing import Any

import pytest

import function_app
from devstack.functions_host import deliver_event_grid
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from tests import scenarios as s
from tests.support.commands import cli, invoke
from tests.support.http import call
from tests.support.runs import by_name, records

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
KEY, PINNED = s.key_id("cmk"), s.key_id("cmk", OLD)
GEO = s.key_id("geo-cmk", s.vid("geo-1"), vault=s.OTHER_VAULT)
UAI, GEO_UAI = s.identity_id("uai-db"), s.identity_id("uai-db-geo")
PG, MY = "postgresFlexibleServers", "mysqlFlexibleServers"


def estate(*servers: tuple[str, dict[str, Any]], exp: str | None = None, size: int = 2048) -> dict[str, Any]:
    """The key `cmk` (old, new), `geo-cmk` in the other vault, and these servers ((entry, spec) each)."""
    versions = (s.version("old", created="-200d", exp=exp), s.version("new", created="-1h", exp=exp))
    cmk = {**s.key(*versions), "size": size}
    base = s.scenario({"cmk": cmk}, other_vault_keys={"geo-cmk": s.key(s.version("geo-1", exp=None))})
    return s.with_keyed(base, *servers)


def server(entry: str, name: str, key: str, **options: Any) -> tuple[str, dict[str, Any]]:
    return entry, s.keyed(entry, name, key, identities=[UAI, GEO_UAI], key_identity=UAI, **options)


def both_pinned() -> list[tuple[str, dict[str, Any]]]:
    return [
        server(PG, "pg-both", PINNED, geoBackupKeyId=PINNED, geoBackupIdentity=GEO_UAI),
        server(PG, "pg-geo-elsewhere", PINNED, geoBackupKeyId=GEO, geoBackupIdentity=GEO_UAI),
        server(PG, "pg-latest", KEY),
        server(MY, "my-pinned", PINNED, geoBackupKeyId=PINNED, geoBackupIdentity=GEO_UAI),
    ]


def held(stack: Any, entry: str) -> dict[str, tuple[str, str | None]]:
    """name -> (primary key id, geo-backup key id) each server of `entry` holds in the emulator."""
    return {
        r["id"].rsplit("/", 1)[1]: (r["keyId"], r.get("geoBackupKeyId")) for r in stack.admin.state()[entry]
    }


def test_an_event_moves_both_uris_of_the_key_in_one_patch_and_leaves_another_vaults_geo_key(stack) -> None:
    stack.load(estate(*both_pinned()))
    event = s.event_grid_event("KeyNewVersionCreated", "cmk", NEW, event_id="evt-flex")
    assert deliver_event_grid(function_app.on_key_event, [event]) == [None]
    dispatcher = stack.dispatcher(function_app.run_rotation)
    stats = dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    assert stats.failures == [] and len(stats.invocations) == 1

    moved = s.key_id("cmk", NEW)
    assert held(stack, PG) == {
        "pg-both": (moved, moved),
        "pg-geo-elsewhere": (moved, GEO),
        "pg-latest": (KEY, None),
    }
    assert held(stack, MY) == {"my-pinned": (moved, moved)}
    patches = sorted(w["path"].rsplit("/", 1)[1] for w in stack.writes("PATCH"))
    assert patches == ["my-pinned", "pg-both", "pg-geo-elsewhere"]  # one PATCH each
    polls = [c["path"] for c in stack.admin.calls()["calls"] if "/azureAsyncOperation/" in c["path"]]
    assert polls and all("/locations/westeurope/azureAsyncOperation/" in p for p in polls)
    service = stack.service()
    records, _ = service.audit.query(top=500)
    assert {r["target"].rsplit("/", 1)[1] for r in records if r["kind"] == "verified"} == set(patches)


def test_plan_at_the_http_door_and_the_cli_in_json_and_table(stack) -> None:
    stack.load(estate(*both_pinned()))
    status, body, _ = call(function_app.plan_rotation, "POST", "/api/rotations/plan", {"keyId": KEY})
    assert status == 200, body
    actions = {st["target"].rsplit("/", 1)[1]: (st["action"], st["kind"]) for st in body["steps"]}
    assert actions == {
        "pg-both": ("update", "postgresflexible"),
        "pg-geo-elsewhere": ("update", "postgresflexible"),
        "pg-latest": ("auto-rotating", "postgresflexible"),
        "my-pinned": ("update", "mysqlflexible"),
    }
    mysql = next(st for st in body["steps"] if st["kind"] == "mysqlflexible")
    assert "MySQL refuses a key with an expiration date" in mysql["message"]
    code, plan = cli("plan", KEY)
    assert code == 0 and {st["action"] for st in plan["steps"]} == {"update", "auto-rotating"}
    code, text = invoke("plan", KEY)
    rows = {line.split()[0]: line.split()[2] for line in text.splitlines() if line.startswith(("pg-", "my-"))}
    assert code == 0 and rows == {
        "my-pinned": "mysqlflexible",
        "pg-both": "postgresflexible",
        "pg-geo-elsewhere": "postgresflexible",
    }
    geo_code, geo_plan = cli("plan", s.key_id("geo-cmk", vault=s.OTHER_VAULT))
    [geo_step] = geo_plan["steps"]
    assert (
        geo_code == 0
        and geo_step["target"].endswith("/pg-geo-elsewhere")
        and geo_step["action"] == "already-current"
    )
    assert stack.writes("PATCH") == []


def test_a_blocked_postgres_server_is_told_it_goes_inaccessible(stack) -> None:
    versions = (s.version("old", created="-200d", enabled=False), s.version("new", created="-1h"))
    base = s.scenario({"cmk": s.key(*versions)})
    stack.load(s.with_keyed(base, server(PG, "pg-disabled", PINNED), server(MY, "my-disabled", PINNED)))
    result = stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest"))
    steps = by_name(result)
    assert {n: (st.action, st.reason) for n, st in steps.items()} == {
        "pg-disabled": ("blocked", "current-version-disabled"),
        "my-disabled": ("blocked", "current-version-disabled"),
    }
    assert "Inaccessible within 60 minutes" in steps["pg-disabled"].message
    assert "Inaccessible" not in steps["my-disabled"].message
    assert stack.writes("PATCH") == []


def test_an_unassigned_identity_and_a_refused_key_size_are_blocked_and_never_written(stack) -> None:
    stray = s.identity_id("uai-gone")
    unassigned = server(PG, "pg-stray", PINNED, geoBackupKeyId=PINNED, geoBackupIdentity=stray)
    stack.load(estate(unassigned, server(MY, "my-small", PINNED), size=1024))
    result = stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest"))
    reasons = {n: (st.action, st.reason) for n, st in by_name(result).items()}
    assert reasons == {
        "pg-stray": ("blocked", "identity-not-assigned"),
        "my-small": ("blocked", "key-type-unsupported"),
    }
    assert stack.writes("PATCH") == []


def cmk_versions(stack: Any) -> list[dict[str, Any]]:
    return stack.admin.state()["vaults"][s.VAULT]["keys"]["cmk"]["versions"]


def test_rotate_sets_no_expiry_on_a_key_a_mysql_server_uses_and_says_why(stack) -> None:
    stack.load(estate(server(MY, "my-pinned", PINNED), server(PG, "pg-pinned", PINNED)))
    code, result = cli("rotate", KEY, "--yes")
    assert code == 0, result
    assert [v.get("exp") for v in cmk_versions(stack)] == [None, None]
    [note] = [n for n in result["notes"] if "expiration date" in n]
    assert "1 consumer(s) of this key (my-pinned)" in note and "isn't set" in note
    assert {r["kind"] for r in records(stack)} >= {"expiry-not-set", "verified"}
    # The same key with only a PostgreSQL server: the desired version gets its expiry as usual.
    stack.load(estate(server(PG, "pg-pinned", PINNED)))
    code, _ = cli("rotate", KEY, "--yes")
    assert code == 0 and cmk_versions(stack)[-1].get("exp") is not None


def test_a_near_expiry_event_makes_no_version_the_policy_would_give_an_expiry(stack) -> None:
    policy = {
        "lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}],
        "attributes": {"expiryTime": "P90D"},
    }
    base = s.scenario({"cmk": s.key(s.version("old", created="-200d", exp="+10d"), policy=policy)})
    stack.load(s.with_keyed(base, server(MY, "my-pinned", PINNED)))
    event = s.event_grid_event("KeyNearExpiry", "cmk", OLD, event_id="ne-mysql")
    assert deliver_event_grid(function_app.on_key_event, [event]) == [None]
    dispatcher = stack.dispatcher(function_app.run_rotation)
    stats = dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    assert stats.failures == []
    assert len(cmk_versions(stack)) == 1  # no version with an expiry for the MySQL server to refuse
    [skipped] = [r for r in records(stack) if r["kind"] == "version-create-skipped"]
    assert skipped["reason"] == "expiry-forbidden" and "expiryTime" in skipped["message"]


@pytest.mark.parametrize("shape", ["location202", "async202"])
def test_a_mysql_write_answered_with_location_only_or_the_async_link_is_followed_and_verified(
    stack, shape: str
) -> None:
    """The MySQL spec's PATCH: 200, or 202 whose final state is read via `Location`."""
    stack.load(estate(server(MY, "my-pinned", PINNED)))
    stack.admin.configure(lroShapes={"Microsoft.DBforMySQL": shape})
    result = stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest"))
    assert by_name(result)["my-pinned"].outcome == "verified"
    assert held(stack, MY) == {"my-pinned": (s.key_id("cmk", NEW), None)}
    polled = [
        c["path"]
        for c in stack.admin.calls()["calls"]
        if "/providers/Microsoft.DBforMySQL/locations/" in c["path"]
    ]
    segment = "/operationResults/" if shape == "location202" else "/azureAsyncOperation/"
    assert polled and all(segment in p for p in polled)


def test_a_run_limited_to_targets_sets_no_expiry_it_cannot_know_is_safe(stack) -> None:
    """The MySQL server is not among the targets, so the run does not see it: no expiry either."""
    stack.load(estate(server(MY, "my-pinned", PINNED), server(PG, "pg-pinned", PINNED)))
    code, result = cli("rotate", KEY, "--target", s.keyed_id(PG, "pg-pinned"), "--yes")
    assert code == 0, result
    assert [v.get("exp") for v in cmk_versions(stack)] == [None, None]
    [record] = [r for r in records(stack) if r["kind"] == "expiry-not-set"]
    assert record["reason"] == "consumers-unseen" and "limited to targets" in record["message"]
    assert held(stack, MY) == {"my-pinned": (PINNED, None)}  # not a target: left for a full run


def test_a_rotation_queued_at_the_http_door_sets_no_expiry_and_its_record_says_why(stack) -> None:
    stack.load(estate(server(MY, "my-pinned", PINNED)))
    status, body, _ = call(function_app.start_rotation, "POST", "/api/rotations", {"keyId": KEY})
    assert status == 202, body
    dispatcher = stack.dispatcher(function_app.run_rotation)
    stats = dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    assert stats.failures == []
    run_id = body["runId"]
    _, done, _ = call(
        function_app.get_rotation, "GET", f"/api/rotations/{run_id}", route_params={"runId": run_id}
    )
    assert done["status"] == "succeeded" and [st["outcome"] for st in done["steps"]] == ["verified"]
    assert [v.get("exp") for v in cmk_versions(stack)] == [None, None]
    [record] = [r for r in records(stack) if r["kind"] == "expiry-not-set"]
    assert (
        record["runId"] == run_id
        and record["reason"] == "expiry-forbidden"
        and "my-pinned" in record["message"]
    )


def test_a_geo_backup_uri_behind_the_primary_is_held_then_moved_by_one_patch(stack) -> None:
    moved = s.key_id("cmk", NEW)
    stack.load(estate(server(PG, "pg-split", moved, geoBackupKeyId=PINNED, geoBackupIdentity=GEO_UAI)))
    code, refused = cli("versions", "disable", PINNED, "--yes")
    assert (
        code == 3 and refused["outcome"] == "refused" and refused["consumers"] == [s.keyed_id(PG, "pg-split")]
    )
    code, result = cli("rotate", KEY, "--yes")
    assert code == 0 and [st["outcome"] for st in result["steps"]] == ["verified"], result
    assert held(stack, PG) == {"pg-split": (moved, moved)}
    assert len(stack.writes("PATCH")) == 1
