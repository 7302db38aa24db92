"""The pure parts of revert detection (rotation/run/reverts.py): the version order, which steps
are reverts, the disable guard's window, the inventory marks, and reading the activity log's
events (rotation/azure/activitylog.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotation.azure.activitylog import Change, events_path, latest_write
from rotation.azure.kinds import write_actions
from rotation.model.consumer import Consumer
from rotation.model.decisions import Decision
from rotation.model.ids import KeyRef, ResourceId
from rotation.model.keystate import KeyState, VersionInfo
from rotation.model.results import Plan, PlanStep
from rotation.run import reverts
from rotation.storage.written import Written

NOW = datetime(2026, 12, 7, tzinfo=UTC)
KEY = KeyRef("contoso-cmk.vault.azure.net", "k")
V1 = VersionInfo("1" * 32, True, NOW - timedelta(days=300), None, None)
V2 = VersionInfo("2" * 32, True, NOW - timedelta(days=100), None, None)
V3 = VersionInfo("3" * 32, True, NOW - timedelta(days=1), None, None)
TWIN = VersionInfo("4" * 32, True, V3.created, None, None)  # created the same second as V3
STATE = KeyState(KEY, (V1, V2, TWIN, V3), V3.version, V3, None, "Recoverable+Purgeable")
SUB = "00000000-0000-0000-0000-00000000000a"


def consumer(name: str, version: str | None) -> Consumer:
    key = KEY.with_version(version) if version else KEY
    return Consumer(
        "registry",
        ResourceId(SUB, "rg", "Microsoft.ContainerRegistry", "registries", name),
        key,
        "westeurope",
    )


def written(target: str, version: str | None, **extra: object) -> Written:
    return Written(target, version, "run-1", NOW - timedelta(days=2), **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("found", "wrote", "expected"),
    [
        (V1.version, V3.version, True),  # older than written: reverted
        (V2.version, V3.version, True),
        (V3.version, V1.version, False),  # newer than written: moved on, not a revert
        (V3.version, V3.version, False),  # equal
        (TWIN.version, V3.version, True),  # same `created`: the key's current version is the newer
        (V3.version, TWIN.version, False),
        (V1.version.upper(), V3.version, True),  # versions compare case-insensitively
        (None, V3.version, None),  # versionless: follows the key, cannot be behind
        (V1.version, None, None),  # nothing written
        ("f" * 32, V3.version, None),  # not a version of the key (any more)
        (V1.version, "f" * 32, None),
    ],
)
def test_is_revert_by_the_keys_version_order(
    found: str | None, wrote: str | None, expected: bool | None
) -> None:
    assert reverts.is_revert(STATE, found, wrote) is expected


def test_find_picks_only_the_steps_older_than_what_was_written() -> None:
    steps = tuple(
        PlanStep.of(consumer(name, version), Decision("update", "behind", "update"), V3.version)
        for name, version in (("back", V1.version), ("ahead", V3.version), ("never", V1.version))
    )
    plan = Plan(KEY, STATE, steps)
    rows = {s.target.lower(): written(s.target, V3.version) for s in steps if not s.target.endswith("never")}
    assert [step.target.rsplit("/", 1)[1] for step, _ in reverts.find(plan, rows)] == ["back"]


def test_the_guard_counts_reverts_to_that_version_inside_the_window() -> None:
    recent = written("/r/recent", V3.version, reverted_to=V1.version, reverted_at=NOW - timedelta(days=29))
    stale = written("/r/stale", V3.version, reverted_to=V1.version, reverted_at=NOW - timedelta(days=31))
    other = written("/r/other", V3.version, reverted_to=V2.version, reverted_at=NOW)
    rows = {r.target: r for r in (recent, stale, other)}
    assert [r.target for r in reverts.reverted_to(rows, V1.version.upper(), NOW, 30)] == ["/r/recent"]
    assert reverts.reverted_to(rows, V1.version, NOW, 0) == []  # 0 turns the guard off
    assert reverts.describe_revert(recent).startswith("recent (by unknown caller")


def test_inventory_marks_pending_and_recorded_reverts() -> None:
    back, fixed, old = (
        consumer("back", V1.version),
        consumer("fixed", V3.version),
        consumer("old", V3.version),
    )
    rows = {
        back.target.lower(): written(back.target, V3.version),
        fixed.target.lower(): written(
            fixed.target, V3.version, reverted_to=V1.version, reverted_at=NOW, reverted_by="p"
        ),
        old.target.lower(): written(
            old.target, V3.version, reverted_to=V1.version, reverted_at=NOW - timedelta(days=40)
        ),
    }
    shown = reverts.marks(STATE, (back, fixed, old), rows, NOW, 30)
    assert shown[back.target.lower()] == {"toVersion": V1.version, "fromVersion": V3.version, "pending": True}
    assert shown[fixed.target.lower()]["by"] == "p" and shown[fixed.target.lower()]["pending"] is False
    assert old.target.lower() not in shown


def event(operation: str, at: str, status: str = "Succeeded", caller: str = "p") -> dict[str, object]:
    return {
        "caller": caller,
        "operationName": {"value": operation, "localizedValue": operation},
        "status": {"value": status, "localizedValue": status},
        "eventTimestamp": at,
        "correlationId": f"c-{at}",
    }


def test_latest_write_skips_reads_and_failures() -> None:
    events = [
        event("Microsoft.ContainerRegistry/registries/write", "2026-12-07T10:00:00Z", caller="old"),
        event("Microsoft.ContainerRegistry/registries/write", "2026-12-07T11:00:00Z", caller="deployer"),
        event("Microsoft.ContainerRegistry/registries/write", "2026-12-07T12:00:00Z", "Failed", "failed"),
        event("Microsoft.ContainerRegistry/registries/listCredentials/action", "2026-12-07T13:00:00Z"),
        "not an event",
    ]
    change = latest_write(events)
    assert (change.caller, change.correlation_id) == ("deployer", "c-2026-12-07T11:00:00Z")
    assert change.describe().startswith("deployer (Microsoft.ContainerRegistry/registries/write")
    assert latest_write([]) == Change() and Change().describe() == "unknown (no write logged)"
    assert Change(unreadable="403 AuthorizationFailed").describe() == (
        "unknown (activity log not readable: 403 AuthorizationFailed)"
    )


def test_latest_write_counts_the_actions_kinds_write_with() -> None:
    rotate = "Microsoft.HDInsight/clusters/rotatediskencryptionkey/action"
    events = [
        event("Microsoft.HDInsight/clusters/write", "2026-12-07T10:00:00Z", caller="creator"),
        event(rotate, "2026-12-07T11:00:00Z", caller="deployer"),
        event("Microsoft.HDInsight/clusters/listKeys/action", "2026-12-07T12:00:00Z", caller="reader"),
    ]
    assert latest_write(events).caller == "creator"  # an action is no write unless named
    assert latest_write(events, write_actions()).caller == "deployer"
    assert rotate.lower() in write_actions()
    assert all(a.endswith("/action") for a in write_actions())


def test_the_events_request_filters_by_resource_and_time() -> None:
    target = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r1"
    path = events_path(target, NOW)
    assert path.startswith(
        f"/subscriptions/{SUB}/providers/Microsoft.Insights/eventtypes/management/values?$filter="
    )
    assert "eventTimestamp%20ge%20%272026-12-07T00%3A00%3A00.000Z%27" in path
    assert "resourceUri%20eq%20%27%2Fsubscriptions%2F" in path


def test_the_events_request_never_reaches_past_the_logs_retention() -> None:
    target = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r1"
    path = events_path(target, NOW - timedelta(days=400), now=NOW)
    assert "2026-09-09T00%3A00%3A00.000Z" in path  # 89 days before NOW
