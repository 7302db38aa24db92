"""The retire guard's per-kind grace (a kind's `retire_grace`): `versions disable` refuses a
version a PostgreSQL server left less than 2 hours ago, naming it and the time left, whether a
run moved it (the written store's time) or it follows new versions itself (the next version's
`created`); later, by an injected clock, the same disable goes through; `--force` overrides,
audited. A kind without a grace (MySQL) is not held."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.estate import retire
from rotation.model.ids import parse_key_id
from tests import scenarios as s
from tests.support.commands import cli, invoke
from tests.support.runs import records

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("cmk")
UAI = s.identity_id("uai-db")


def load(stack: Any, *servers: tuple[str, str, str], new_created: str = "-1h") -> None:
    """The key `cmk` (old, new created `new_created`) and servers (entry, name, key id)."""
    versions = (s.version("old", created="-200d", exp=None), s.version("new", created=new_created, exp=None))
    base = s.scenario({"cmk": s.key(*versions)})
    specs = (
        (entry, s.keyed(entry, name, key, identities=[UAI], key_identity=UAI)) for entry, name, key in servers
    )
    stack.load(s.with_keyed(base, *specs))


def old_enabled(stack: Any) -> bool:
    versions = stack.admin.state()["vaults"][s.VAULT]["keys"]["cmk"]["versions"]
    return next(v["enabled"] for v in versions if v["version"] == OLD)


def disable_in(stack: Any, later: timedelta) -> retire.DisableOutcome:
    """`versions disable` of the old version as if `later` had passed (the guard's clock)."""
    key = parse_key_id(s.key_id("cmk", OLD))
    moment = datetime.now(UTC) + later
    return retire.disable(stack.service(), key, force=False, actor="pytest", clock=lambda: moment)


def test_a_postgres_server_moved_by_a_run_holds_the_old_version_two_hours(stack) -> None:
    load(stack, ("postgresFlexibleServers", "pg-moved", s.key_id("cmk", OLD)))
    assert invoke("rotate", KEY, "--yes")[0] == 0
    code, output = invoke("versions", "disable", s.key_id("cmk", OLD), "--yes")
    assert code == 3 and "refused" in output and "postgresflexible pg-moved" in output
    assert "1h59m left" in output or "2h00m left" in output
    code, refused = cli("versions", "disable", s.key_id("cmk", OLD), "--yes")
    assert code == 3 and refused["outcome"] == "refused" and old_enabled(stack)
    [record, *_] = [r for r in records(stack) if r["kind"] == "version-disable"]
    assert record["reason"] == "version-in-grace"
    assert [g["target"].rsplit("/", 1)[1] for g in record["detail"]["inGrace"]] == ["pg-moved"]

    done = disable_in(stack, timedelta(hours=2, minutes=1))
    assert done.outcome == "disabled" and not old_enabled(stack)


def test_a_versionless_postgres_server_is_held_from_the_next_versions_creation(stack) -> None:
    load(stack, ("postgresFlexibleServers", "pg-latest", KEY), new_created="-90m")
    code, refused = cli("versions", "disable", s.key_id("cmk", OLD), "--yes")
    assert code == 3 and "pg-latest" in refused["message"] and "0h30m left" in refused["message"]
    soon = disable_in(stack, timedelta(minutes=20))
    assert soon.refused and "0h10m left" in soon.message
    after = disable_in(stack, timedelta(minutes=31))
    assert after.outcome == "disabled"


def test_force_overrides_the_grace_audited_and_a_mysql_server_has_none(stack) -> None:
    load(stack, ("postgresFlexibleServers", "pg-latest", KEY))
    code, forced = cli("versions", "disable", s.key_id("cmk", OLD), "--yes", "--force")
    assert code == 0 and forced["outcome"] == "disabled-override" and "grace" in forced["message"]
    [record] = [r for r in records(stack) if r["kind"] == "version-disable"]
    assert record["reason"] == "forced" and record["detail"]["inGrace"][0]["kind"] == "postgresflexible"

    load(stack, ("mysqlFlexibleServers", "my-moved", s.key_id("cmk", OLD)))
    assert invoke("rotate", KEY, "--yes")[0] == 0
    code, output = invoke("-o", "json", "versions", "disable", s.key_id("cmk", OLD), "--yes")
    assert code == 0 and json.loads(output)["outcome"] == "disabled"
