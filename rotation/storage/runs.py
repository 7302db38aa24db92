"""Run records in table `RotationRuns`: what `GET /api/rotations/{runId}` answers.

PartitionKey = run id; RowKey "run" holds the run's state, and one row per target
("step-00001", ...) holds its result, so a run over a thousand targets stays within the
Table service's entity limits.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceNotFoundError

from rotation.model.times import utc_now
from rotation.storage.tablebatch import submit_transaction

if TYPE_CHECKING:
    from azure.data.tables import TableClient, UpdateMode

RUNS_TABLE = "RotationRuns"
_RUN_ROW = "run"
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
            mode=_mode().MERGE,
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
            mode=_mode().MERGE,
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
            mode=_mode().MERGE,
        )

    def finished(self, run_id: str, summary: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        rows = []
        for index, step in enumerate(steps, start=1):
            row: dict[str, Any] = {"PartitionKey": run_id, "RowKey": f"step-{index:05d}"}
            row.update({k[0].upper() + k[1:]: step.get(k) for k in _STEP_FIELDS if step.get(k) is not None})
            rows.append(row)
        # Replace, not merge: a row reused from an earlier attempt must not keep its old error.
        operations: list[Any] = [("upsert", r, {"mode": _mode().REPLACE}) for r in rows]
        stale = self.table.query_entities(
            "PartitionKey eq @pk and RowKey gt @last and RowKey lt 'step.'",
            parameters={"pk": run_id, "last": f"step-{len(rows):05d}"},
            select=["PartitionKey", "RowKey"],
        )
        operations += [("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]}) for e in stale]
        for start in range(0, len(operations), 100):
            submit_transaction(self.table, operations[start : start + 100])  # CPU: tablebatch.py
        run_row = {
            "PartitionKey": run_id,
            "RowKey": _RUN_ROW,
            "FinishedAt": utc_now(),
            "StepCount": len(steps),
        }
        for name, value in summary.items():
            column = name[0].upper() + name[1:]
            run_row[column] = json.dumps(value) if isinstance(value, dict | list) else value
        self.table.upsert_entity(run_row, mode=_mode().MERGE)

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

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The run and its per-target results, or None."""
        entities = list(self.table.query_entities("PartitionKey eq @pk", parameters={"pk": run_id}))
        run = next((e for e in entities if e["RowKey"] == _RUN_ROW), None)
        if run is None:
            return None
        result: dict[str, Any] = {"runId": run_id}
        for column, value in run.items():
            if column in ("PartitionKey", "RowKey"):
                continue
            name = column[0].lower() + column[1:]
            if isinstance(value, str) and value[:1] in "[{":
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            result[name] = value
        steps = sorted((e for e in entities if e["RowKey"].startswith("step-")), key=lambda e: e["RowKey"])
        result["steps"] = [
            {k[0].lower() + k[1:]: v for k, v in e.items() if k not in ("PartitionKey", "RowKey")}
            for e in steps
        ]
        return result


def _mode() -> type[UpdateMode]:
    """azure-data-tables' UpdateMode, imported when a run first writes (not with function_app)."""
    from azure.data.tables import UpdateMode

    return UpdateMode
