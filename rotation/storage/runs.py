"""Run records in table `RotationRuns`: what `GET /api/rotations/{runId}` answers.

PartitionKey = run id, RowKey "run": the run's state. One row per target holds its result
(RowKey "step-00001", ...), a thousand to a partition (`<run id>.s000`, `<run id>.s001`, ...):
a Table partition takes about 2,000 entities a second, so the 10,000 rows of a large run are
written over ten partitions, several transactions at once, not queued behind one (and
Azurite, whose row lookup scans the partition, stays linear). Runs recorded before that keep
their step rows in the run's own partition; `get` reads both.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceNotFoundError

from rotation.concurrency import map_in_context
from rotation.model.times import utc_now
from rotation.storage.tablebatch import submit_transaction
from rotation.storage.tables import update_mode

if TYPE_CHECKING:
    from azure.data.tables import TableClient

RUNS_TABLE = "RotationRuns"
_RUN_ROW = "run"
STEPS_PER_PARTITION = 1000
_PARALLEL_TRANSACTIONS = 4  # step rows: transactions in flight at once (different partitions)
_STEP_FIELDS = (
    "target",
    "kind",
    "action",
    "reason",
    "message",
    "fromVersion",
    "toVersion",
    "outcome",
    "errorCode",
    "error",
    "hint",
    "durationMs",
    "attempts",
    "wave",
)
_STEP_COLUMNS = tuple((field, field[0].upper() + field[1:]) for field in _STEP_FIELDS)


class RunStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def queued(
        self, run_id: str, *, key_id: str, source: str, actor: str, dry_run: bool, event_id: str | None = None
    ) -> None:
        """Record a run that was put on the queue (status `queued`) unless it already exists."""
        try:
            self.table.get_entity(run_id, _RUN_ROW)
            return
        except ResourceNotFoundError:
            pass
        self.table.upsert_entity(
            {
                "PartitionKey": run_id,
                "RowKey": _RUN_ROW,
                "Status": "queued",
                "KeyId": key_id,
                "Source": source,
                "Actor": actor,
                "DryRun": dry_run,
                "EventId": event_id,
                "QueuedAt": utc_now(),
            },
            mode=update_mode().MERGE,
        )

    def started(
        self,
        run_id: str,
        *,
        key_id: str,
        source: str,
        actor: str,
        dry_run: bool,
        attempt: int,
        event_id: str | None = None,
    ) -> None:
        self.table.upsert_entity(
            {
                "PartitionKey": run_id,
                "RowKey": _RUN_ROW,
                "Status": "running",
                "KeyId": key_id,
                "Source": source,
                "Actor": actor,
                "DryRun": dry_run,
                "EventId": event_id,
                "StartedAt": utc_now(),
                "Attempt": attempt,
            },
            mode=update_mode().MERGE,
        )

    def note(self, run_id: str, status: str, message: str) -> None:
        """A state change without results (waiting for a lease, skipped as a duplicate)."""
        self.table.upsert_entity(
            {
                "PartitionKey": run_id,
                "RowKey": _RUN_ROW,
                "Status": status,
                "Message": message[:4000],
                "UpdatedAt": utc_now(),
            },
            mode=update_mode().MERGE,
        )

    def finished(
        self,
        run_id: str,
        summary: dict[str, Any],
        steps: list[dict[str, Any]],
        written: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """The run's outcome and a row per step. `written`: rows already written while the run
        went (storage/steprows.py), by RowKey; only rows that differ from them are written."""
        rows = [step_row(run_id, index, step) for index, step in enumerate(steps, start=1)]
        # Replace, not merge: a row reused from an earlier attempt must not keep its old error.
        operations: list[Any] = [upsert(r) for r in rows if written is None or written.get(r["RowKey"]) != r]
        operations += [("delete", _keys(e)) for e in self._stale(run_id, len(rows))]
        transactions: list[list[Any]] = []
        for operation in operations:  # one transaction: one partition, at most 100 operations
            last = transactions[-1] if transactions else None
            if last and len(last) < 100 and last[0][1]["PartitionKey"] == operation[1]["PartitionKey"]:
                last.append(operation)
            else:
                transactions.append([operation])
        with ThreadPoolExecutor(max_workers=_PARALLEL_TRANSACTIONS) as pool:
            list(
                map_in_context(pool, lambda batch: submit_transaction(self.table, batch), transactions)
            )  # CPU: tablebatch.py
        run_row = {
            "PartitionKey": run_id,
            "RowKey": _RUN_ROW,
            "FinishedAt": utc_now(),
            "StepCount": len(steps),
        }
        for name, value in summary.items():
            column = name[0].upper() + name[1:]
            run_row[column] = json.dumps(value) if isinstance(value, dict | list) else value
        self.table.upsert_entity(run_row, mode=update_mode().MERGE)

    def status(self, run_id: str) -> str | None:
        """The run's status alone (one read, without its step rows), or None for no such run."""
        try:
            return self.table.get_entity(run_id, _RUN_ROW, select=["Status"]).get("Status")
        except ResourceNotFoundError:
            return None

    def ids_starting_with(self, prefix: str, limit: int = 10) -> list[str]:
        """Run ids that start with `prefix` (at most `limit`), for ids shortened in listings."""
        entities = self.table.query_entities(
            "PartitionKey ge @lo and PartitionKey lt @hi and RowKey eq @row",
            parameters={"lo": prefix, "hi": prefix + "~", "row": _RUN_ROW},  # "~" sorts after hex
            select=["PartitionKey"],
            results_per_page=limit,
        )
        ids = []
        for entity in entities:
            ids.append(entity["PartitionKey"])
            if len(ids) >= limit:
                break
        return ids

    def in_status(self, status: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Run rows (not their steps) whose status is `status`, at most `limit` of them."""
        entities = self.table.query_entities(
            "RowKey eq @row and Status eq @status", parameters={"row": _RUN_ROW, "status": status}
        )
        found = []
        for entity in entities:
            found.append(dict(entity))
            if len(found) >= limit:
                break
        return found

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The run and its per-target results, or None."""
        entities = list(self.table.query_entities("PartitionKey eq @pk", parameters={"pk": run_id}))
        run = next((e for e in entities if e["RowKey"] == _RUN_ROW), None)
        if run is None:
            return None
        result: dict[str, Any] = {"runId": run_id, **camel_row(run)}
        shards = [e for e in entities if e["RowKey"].startswith("shard-")]  # a sharded run's
        if shards:
            result["shards"] = [{"shard": int(e["RowKey"][6:]), **camel_row(e)} for e in shards]
        rows = [e for e in entities if e["RowKey"].startswith("step-")] + self._steps_after(run_id, 0)
        steps = sorted(rows, key=lambda e: e["RowKey"])
        result["steps"] = [
            {k[0].lower() + k[1:]: v for k, v in e.items() if k not in ("PartitionKey", "RowKey")}
            for e in steps
        ]
        return result

    def _steps_after(self, run_id: str, count: int) -> list[Any]:
        """Step rows in the step partitions numbered past `count` (all of them for 0)."""
        return list(
            self.table.query_entities(
                "PartitionKey ge @lo and PartitionKey lt @hi and RowKey gt @after",
                parameters={"lo": f"{run_id}.s", "hi": f"{run_id}.t", "after": _step_row(count)},
            )
        )

    def _stale(self, run_id: str, count: int) -> list[Any]:
        """What a finished attempt of `count` steps replaces: an earlier attempt's rows past
        `count`, and every step row left in the run's own partition by runs recorded before the
        step partitions."""
        legacy = self.table.query_entities(
            "PartitionKey eq @pk and RowKey gt 'step-' and RowKey lt 'step.'",
            parameters={"pk": run_id},
            select=["PartitionKey", "RowKey"],
        )
        return [*self._steps_after(run_id, count), *legacy]


def camel_row(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A row's columns in the API's camelCase, JSON columns read back, keys left out."""
    shown: dict[str, Any] = {}
    for column, value in entity.items():
        if column in ("PartitionKey", "RowKey"):
            continue
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        shown[column[0].lower() + column[1:]] = value
    return shown


def step_partition(run_id: str, index: int) -> str:
    """The partition of a run's step `index` (from 1): a thousand steps to a partition."""
    return f"{run_id}.s{(index - 1) // STEPS_PER_PARTITION:03d}"


def step_row(run_id: str, index: int, step: Mapping[str, Any]) -> dict[str, Any]:
    """The Table row of a run's step `index` (from 1)."""
    row: dict[str, Any] = {"PartitionKey": step_partition(run_id, index), "RowKey": _step_row(index)}
    for field, column in _STEP_COLUMNS:  # named once, not per row: a run writes one per target
        if (value := step.get(field)) is not None:
            row[column] = value
    return row


def upsert(row: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A transaction's replace-upsert of `row`."""
    return ("upsert", row, {"mode": update_mode().REPLACE})


def _step_row(index: int) -> str:
    return f"step-{index:05d}"


def _keys(entity: Any) -> dict[str, str]:
    return {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"]}
