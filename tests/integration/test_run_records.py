"""Run records at the size of a large run: step rows a thousand to a partition, read back in
order, an attempt with fewer steps leaves none of the earlier attempt's rows, and a run recorded
before the split (steps in the run's own partition) still reads. Real Table client, Azurite."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.data.tables import TableClient

from rotation.storage.runs import RUNS_TABLE, RunStore, step_partition
from rotation.storage.steprows import StepRowWriter
from tests.conftest import wipe_storage


@pytest.fixture
def store(azurite) -> RunStore:
    wipe_storage(azurite.connection_string)
    table = TableClient.from_connection_string(azurite.connection_string, RUNS_TABLE)
    table.create_table()
    return RunStore(table)


def steps(count: int, outcome: str = "verified") -> list[dict[str, Any]]:
    return [{"target": f"/subscriptions/s/t{i}", "outcome": outcome, "attempts": 1} for i in range(count)]


def started(store: RunStore) -> str:
    run_id = str(uuid.uuid4())
    store.started(run_id, key_id="k", source="cli", actor="pytest", dry_run=False, attempt=1)
    return run_id


def test_a_large_run_spreads_its_steps_over_partitions_and_reads_back_in_order(store: RunStore) -> None:
    run_id = started(store)
    store.finished(run_id, {"status": "succeeded"}, steps(2500))
    partitions = {e["PartitionKey"] for e in store.table.list_entities(select=["PartitionKey"])}
    assert partitions == {run_id, f"{run_id}.s000", f"{run_id}.s001", f"{run_id}.s002"}
    assert (
        step_partition(run_id, 1000) == f"{run_id}.s000" and step_partition(run_id, 1001) == f"{run_id}.s001"
    )
    record = store.get(run_id)
    assert record is not None and record["status"] == "succeeded" and record["stepCount"] == 2500
    assert [st["target"] for st in record["steps"]] == [f"/subscriptions/s/t{i}" for i in range(2500)]


def test_a_later_attempt_with_fewer_steps_leaves_none_of_the_earlier_rows(store: RunStore) -> None:
    run_id = started(store)
    store.finished(run_id, {"status": "failed"}, steps(1200, "failed"))
    store.finished(run_id, {"status": "succeeded"}, steps(3))
    record = store.get(run_id)
    assert record is not None
    assert [st["outcome"] for st in record["steps"]] == ["verified"] * 3


def test_a_run_recorded_before_the_split_still_reads_and_is_cleaned_on_rerun(store: RunStore) -> None:
    run_id = started(store)
    for index in (1, 2):  # as runs.py wrote them before: step rows in the run's own partition
        store.table.upsert_entity(
            {
                "PartitionKey": run_id,
                "RowKey": f"step-{index:05d}",
                "Target": f"old{index}",
                "Outcome": "failed",
            }
        )
    record = store.get(run_id)
    assert record is not None and [st["target"] for st in record["steps"]] == ["old1", "old2"]
    store.finished(run_id, {"status": "succeeded"}, steps(1))
    record = store.get(run_id)
    assert record is not None
    assert [st["target"] for st in record["steps"]] == ["/subscriptions/s/t0"]


def rows_in_step_partitions(store: RunStore, run_id: str) -> int:
    return len(store._steps_after(run_id, 0))


def test_step_rows_are_written_while_the_run_goes_and_finished_writes_only_the_rest(
    store: RunStore, azurite
) -> None:
    run_id = started(store)
    all_steps = steps(250)
    writer = StepRowWriter(store, run_id, [st["target"] for st in all_steps])
    for step in reversed(all_steps):  # steps finish in any order
        writer.add(step)
    written = writer.close()
    assert len(written) == 200 and rows_in_step_partitions(store, run_id) == 200  # two full transactions
    all_steps[-1] = {**all_steps[-1], "outcome": "failed"}  # a result replaced after it was written
    sent: list[str] = []
    store.table = TableClient.from_connection_string(
        azurite.connection_string,
        RUNS_TABLE,
        raw_request_hook=lambda request: sent.append(request.http_request.method),
    )
    store.finished(run_id, {"status": "succeeded"}, all_steps, written)
    record = store.get(run_id)
    assert record is not None and [st["target"] for st in record["steps"]] == [
        st["target"] for st in all_steps
    ]
    assert record["steps"][-1]["outcome"] == "failed"  # written early, replaced since, written again
    assert sent.count("POST") == 1  # one transaction: the 50 never written and the changed one


def test_a_background_write_that_fails_is_made_good_when_the_run_finishes(azurite) -> None:
    wipe_storage(azurite.connection_string)
    table = TableClient.from_connection_string(azurite.connection_string, RUNS_TABLE)
    store = RunStore(table)
    run_id = str(uuid.uuid4())
    all_steps = steps(100)
    writer = StepRowWriter(store, run_id, [st["target"] for st in all_steps])
    for step in all_steps:
        writer.add(step)  # the table does not exist yet: the background transaction fails
    assert writer.close() == {}
    table.create_table()
    store.finished(run_id, {"status": "succeeded"}, all_steps, {})
    record = store.get(run_id)
    assert record is not None and len(record["steps"]) == 100


def test_a_step_that_ends_after_the_writer_closed_is_let_go(store: RunStore) -> None:
    """A step cut at a stop goes on in its thread and may end after the run closed the writer;
    filling a partition then started a write on the shut pool, which raised in that thread."""
    run_id = started(store)
    all_steps = steps(100)
    writer = StepRowWriter(store, run_id, [st["target"] for st in all_steps])
    for step in all_steps[:99]:
        writer.add(step)
    assert writer.close() == {}
    writer.add(all_steps[99])  # the partition's hundredth row, after the close
    assert rows_in_step_partitions(store, run_id) == 0
