"""A dead run's records, read by the run that took over its lease (run/unfinished.py): its
planned updates now on the new version without a `verified` record are recorded, and records
that cannot be read (tampered, malformed) are a warning, never a failure of the finding run."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from rotation.run.unfinished import account_for_unfinished
from tests.unit.test_lanes import A, step

OLD, NEW = "a" * 32, "b" * 32  # test_lanes' steps: consumers on OLD, desired NEW


class Store:
    def __init__(self, records: list[dict[str, Any]], document: Any) -> None:
        self.records, self.document = records, document

    def latest_anchor(self, run_id: str) -> dict[str, Any]:
        return {"partition": "20261207", "runId": run_id}

    def run_records(self, run_id: str, partition: str) -> list[dict[str, Any]]:
        return self.records

    def plan_document(self, name: str) -> Any:
        return self.document


class Runs:
    def __init__(self) -> None:
        self.notes: list[tuple[str, str]] = []

    def status(self, run_id: str) -> str:
        return "running"

    def note(self, run_id: str, status: str, message: str) -> None:
        self.notes.append((run_id, status))


class Trail:
    run_id = "next-run"

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, kind: str, **fields: Any) -> None:
        self.records.append({"kind": kind, **fields})


def plan_now(*on: tuple[str, str]) -> Any:
    """This run's plan: each target with the version it is found on."""
    steps = []
    for name, version in on:
        planned = step(A, name)
        steps.append(SimpleNamespace(target=planned.target, from_version=version))
    return SimpleNamespace(steps=steps)


def document(*names: str) -> dict[str, Any]:
    return {
        "steps": [
            {"target": step(A, n).target, "action": "update", "fromVersion": OLD, "toVersion": NEW}
            for n in names
        ]
    }


def account(store: Store, plan: Any) -> tuple[Trail, Runs]:
    trail, runs, result = Trail(), Runs(), SimpleNamespace(notes=[])
    account_for_unfinished(store, runs, "dead-run/abc123", plan, trail, result)  # type: ignore[arg-type]
    return trail, runs


def test_moves_without_a_verified_record_are_recorded_naming_the_dead_run() -> None:
    records = [
        {"kind": "plan", "seq": 2, "detail": {"planDocument": "runs/dead-run/plan-2.json"}},
        {"kind": "verified", "seq": 3, "target": step(A, "r1").target, "outcome": "verified"},
        {"kind": "apply-outcome", "seq": 4, "target": step(A, "r2").target, "outcome": "in-flight"},
    ]
    store = Store(records, document("r1", "r2", "r3", "r4"))
    trail, runs = account(store, plan_now(("r1", NEW), ("r2", NEW), ("r3", NEW), ("r4", OLD)))
    unrecorded = [r for r in trail.records if r["kind"] == "unrecorded-move"]
    # r1 has its record; r2 was only in flight; r3 moved with no record; r4 never moved
    assert [r["target"].rsplit("/", 1)[1] for r in unrecorded] == ["r2", "r3"]
    assert [r["detail"] for r in unrecorded] == [
        {"interruptedRun": "dead-run", "lastRecord": "in-flight"},
        {"interruptedRun": "dead-run", "lastRecord": None},
    ]
    assert trail.records[-1]["detail"] == {"interruptedRun": "dead-run", "unrecordedMoves": 2}
    assert runs.notes == [("dead-run", "interrupted")]


def test_malformed_records_of_the_dead_run_are_a_warning() -> None:
    for records, doc in (
        ([{"kind": "plan", "seq": 2, "detail": "not an object"}], document("r1")),
        ([{"kind": "plan", "seq": 2, "detail": {"planDocument": "x"}}], {"steps": "not a list of steps"}),
        ([{"kind": "plan", "seq": 2, "detail": {"planDocument": "x"}}], {"steps": [["a list"]]}),
    ):
        trail, _ = account(Store(records, doc), plan_now(("r1", NEW)))
        assert [r["kind"] for r in trail.records] == ["warning"], trail.records
        assert "dead-run" in trail.records[0]["message"]
