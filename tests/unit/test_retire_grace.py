"""The retire guard's grace windows (rotation/estate/retire.py `in_grace`), pure, on an injected
time: who left a version less than its kind's `retire_grace` ago, and since when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rotation.azure.kinds.flexible_servers import MySqlFlexibleServers, PostgresFlexibleServers
from rotation.estate.retire import in_grace
from rotation.model.consumer import Consumer
from rotation.model.ids import ResourceId, parse_key_id, parse_resource_id
from rotation.model.keystate import KeyState, VersionInfo
from rotation.storage.written import Written

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
V1, V2, V3 = (
    "11111111111111111111111111111111",
    "22222222222222222222222222222222",
    "33333333333333333333333333333333",
)
KEY = parse_key_id("https://contoso-cmk.vault.azure.net/keys/cmk")
KINDS = {"postgresflexible": PostgresFlexibleServers(), "mysqlflexible": MySqlFlexibleServers()}
VERSIONS = tuple(
    VersionInfo(v, True, T0 + timedelta(hours=h), None, None) for v, h in ((V1, -500), (V2, 0), (V3, 5))
)
STATE = KeyState(KEY, VERSIONS, V3, VERSIONS[2], None, "Recoverable")


def rid(kind: str, name: str) -> ResourceId:
    rtype = KINDS[kind].resource_type
    return parse_resource_id(
        f"/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/{rtype}/{name}",
        (rtype,),
    )


def consumer(kind: str, name: str, version: str | None) -> Consumer:
    key = KEY.with_version(version) if version else KEY
    return Consumer(kind, rid(kind, name), key, "westeurope", follows_new_versions=version is None)


def written(name: str, kind: str, version: str, at: datetime) -> dict[str, Written]:
    target = str(rid(kind, name))
    return {target.lower(): Written(target, version, "run-1", at)}


def test_a_versionless_server_left_a_version_when_the_next_one_was_created() -> None:
    loose = consumer("postgresflexible", "pg", None)
    [held] = in_grace([loose], KINDS, STATE, VERSIONS[0], {}, T0 + timedelta(minutes=30))
    assert held.left_at == T0 and held.remaining(T0 + timedelta(minutes=30)) == timedelta(minutes=90)
    assert in_grace([loose], KINDS, STATE, VERSIONS[0], {}, T0 + timedelta(hours=2)) == []
    # V2 was left when V3 appeared, 5 hours later
    assert in_grace([loose], KINDS, STATE, VERSIONS[1], {}, T0 + timedelta(hours=6))[
        0
    ].left_at == T0 + timedelta(hours=5)


def test_a_server_moved_by_a_run_left_at_the_write_and_only_to_a_newer_version() -> None:
    moved = consumer("postgresflexible", "pg", V3)
    at = T0 + timedelta(hours=6)
    rows = written("pg", "postgresflexible", V3, at)
    [held] = in_grace([moved], KINDS, STATE, VERSIONS[1], rows, at + timedelta(minutes=1))
    assert held.left_at == at and held.to_dict(at + timedelta(minutes=1))["secondsLeft"] == 7140
    assert in_grace([moved], KINDS, STATE, VERSIONS[2], rows, at) == []  # the version it is on
    assert in_grace([moved], KINDS, STATE, VERSIONS[1], {}, at) == []  # moved by someone else: unknown


def test_a_kind_without_a_grace_holds_nothing() -> None:
    mysql = consumer("mysqlflexible", "my", V3)
    rows = written("my", "mysqlflexible", V3, T0)
    assert (
        in_grace([mysql, consumer("mysqlflexible", "my2", None)], KINDS, STATE, VERSIONS[0], rows, T0) == []
    )
