"""Where a sharded run's shards stand, in table `RotationRuns` (run/sharding.py).

The parent's run row (PartitionKey the parent's run id, RowKey "run") holds `Shards` (how
many) and `ShardMarks`, one character per shard: "." while it has not ended, else the first
letter of how it ended (s succeeded, n needs-attention, b blocked, f failed, x fenced). A shard
that ends changes its character with the row's ETag (If-Match): of several shards ending at
once each update either lands whole or is read again, so every transition is counted once, and
exactly one of them makes the last "." go: that shard closes the run. Each shard also has a row
of its own beside the parent's (`shard-00001`, ...) with its run id and summary, which the
closing shard adds up and `GET /api/rotations/{runId}` lists.

Closing is claimed on the same row (`Closing`, `ClosingMarks`, `ClosingAt`, under its ETag) and
ends with `ClosedMarks`: marks without a "." that differ from `ClosedMarks` are a close that is
due. A closer that crashed after the last mark (or inside the close) leaves it due: its own
redelivery takes the claim again at once, anyone else (a later shard delivery, the sweep) once
the claim is `CLAIM_SECONDS` old, so two live closers never both write the close. Partition
`~sharded-open` lists the parents opened and not closed yet (RowKey the run id), so the sweep
finds a run left open without scanning the table's step rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from rotation.model.times import iso, parse_iso_or_none, utc_now
from rotation.storage.runs import camel_row, upsert
from rotation.storage.tablebatch import MAX_OPERATIONS, submit_transaction
from rotation.storage.tables import update_mode

if TYPE_CHECKING:
    from azure.data.tables import TableClient

RUN_ROW = "run"
PENDING = "."
MARKS = {"succeeded": "s", "needs-attention": "n", "blocked": "b", "failed": "f", "fenced": "x"}
_TRIES = 50  # ETag conflicts in a row before giving up (each is another shard's update landing)
CLAIM_SECONDS = 300  # a close takes seconds; a claim older than this is a closer that died
OPEN_PARTITION = "~sharded-open"  # "~" sorts after every run id: no run's range reaches it


class BookConflict(Exception):
    """The parent's row kept changing under this shard's update (retried by the queue)."""


@dataclass(frozen=True)
class ShardEntry:
    index: int  # from 1
    run_id: str
    subscription: str
    targets: int


@dataclass(frozen=True)
class Marked:
    """What one shard's report did: `closes` is true for the report that ended the last shard
    (or changed an ended run's outcome: a replayed shard)."""

    changed: bool
    closes: bool
    marks: str


def shard_row_key(index: int) -> str:
    return f"shard-{index:05d}"


class ShardBook:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def open(self, parent_run_id: str, entries: Sequence[ShardEntry], fence: int) -> None:
        """Listed as open, one row per shard (queued), then the parent's count and marks."""
        self.table.upsert_entity(
            {"PartitionKey": OPEN_PARTITION, "RowKey": parent_run_id, "OpenedAt": utc_now()}
        )
        rows = [
            {
                "PartitionKey": parent_run_id,
                "RowKey": shard_row_key(e.index),
                "RunId": e.run_id,
                "Subscription": e.subscription,
                "Targets": e.targets,
                "Status": "queued",
            }
            for e in entries
        ]
        for start in range(0, len(rows), MAX_OPERATIONS):
            submit_transaction(self.table, [upsert(r) for r in rows[start : start + MAX_OPERATIONS]])
        self.table.upsert_entity(
            {
                "PartitionKey": parent_run_id,
                "RowKey": RUN_ROW,
                "Shards": len(entries),
                "ShardMarks": PENDING * len(entries),
                "ShardFence": fence,
            },
            mode=update_mode().MERGE,
        )

    def note(
        self, parent_run_id: str, index: int, status: str, summary: dict[str, Any] | None = None
    ) -> None:
        """The shard's own row: where it is now (running, failed attempt n, its outcome)."""
        row: dict[str, Any] = {
            "PartitionKey": parent_run_id,
            "RowKey": shard_row_key(index),
            "Status": status,
            "UpdatedAt": utc_now(),
        }
        if summary is not None:
            row["Summary"] = json.dumps(summary)
        self.table.upsert_entity(row, mode=update_mode().MERGE)

    def mark(
        self,
        parent_run_id: str,
        index: int,
        status: str,
        fence: int,
        *,
        amend: bool = False,
        summary: dict[str, Any] | None = None,
    ) -> Marked:
        """Set the shard's mark under the parent row's ETag (read again after a conflict), its
        own row's status and summary first (the closing shard adds those up). A shard of an
        earlier attempt of the parent (another fence) marks nothing, and a shard that ended
        keeps its mark unless `amend` (a replay of it ended since)."""
        mark = MARKS[status]
        noted = False
        for _ in range(_TRIES):
            row = self.table.get_entity(parent_run_id, RUN_ROW, select=["ShardMarks", "ShardFence"])
            marks = str(row.get("ShardMarks") or "")
            if row.get("ShardFence") != fence:
                return Marked(False, False, marks)
            if not 1 <= index <= len(marks):
                raise ValueError(f"run {parent_run_id} has no shard {index}")
            if marks[index - 1] == mark or (marks[index - 1] != PENDING and not amend):
                return Marked(False, False, marks)  # a duplicate delivery: counted already
            after = marks[: index - 1] + mark + marks[index:]
            if not noted:
                self.note(parent_run_id, index, status, summary)
                noted = True
            try:
                self.table.update_entity(
                    {"PartitionKey": parent_run_id, "RowKey": RUN_ROW, "ShardMarks": after},
                    mode=update_mode().MERGE,
                    etag=row.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    continue  # another shard's mark landed first: read it and try again
                raise
            return Marked(True, PENDING not in after, after)
        raise BookConflict(f"run {parent_run_id}: the shard marks kept changing; shard {index} retries")

    def mark_of(self, parent_run_id: str, index: int, fence: int) -> str | None:
        """The shard's mark ("." while it has not ended); None for a shard of another fence or
        a parent the book does not hold."""
        try:
            row = self.table.get_entity(parent_run_id, RUN_ROW, select=["ShardMarks", "ShardFence"])
        except ResourceNotFoundError:
            return None
        marks = str(row.get("ShardMarks") or "")
        if row.get("ShardFence") != fence or not 1 <= index <= len(marks):
            return None
        return marks[index - 1]

    def claim_close(self, parent_run_id: str, closer: str, now: datetime) -> str | None:
        """Claim the close of the parent's marks as they stand (under the row's ETag); returns
        those marks, or None when no close is due (a shard has not ended, or these marks are
        closed) or another closer claimed it less than CLAIM_SECONDS ago. `closer` claiming
        again (its message redelivered) takes its own claim back at once."""
        for _ in range(_TRIES):
            try:
                row = self.table.get_entity(parent_run_id, RUN_ROW)
            except ResourceNotFoundError:
                return None
            marks = str(row.get("ShardMarks") or "")
            if not marks or PENDING in marks or row.get("ClosedMarks") == marks:
                return None
            claimed = parse_iso_or_none(row.get("ClosingAt"))
            held = row.get("ClosingMarks") == marks and row.get("Closing") not in (None, closer)
            if held and claimed is not None and now - claimed < timedelta(seconds=CLAIM_SECONDS):
                return None
            claim = {"Closing": closer, "ClosingMarks": marks, "ClosingAt": iso(now)}
            try:
                self.table.update_entity(
                    {"PartitionKey": parent_run_id, "RowKey": RUN_ROW, **claim},
                    mode=update_mode().MERGE,
                    etag=row.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    continue  # a mark or another claim landed: read again
                raise
            return marks
        raise BookConflict(f"run {parent_run_id}: the row kept changing while {closer} claimed its close")

    def closed(
        self,
        parent_run_id: str,
        status: str,
        totals: dict[str, int],
        own: dict[str, int],
        exit_code: int,
        by: str,
        marks: str,
    ) -> None:
        """The parent's run record once its last shard ended: the close of `marks` is done.
        `own`: the parent's own steps' summary, kept apart from the totals for a re-close."""
        self.table.upsert_entity(
            {
                "PartitionKey": parent_run_id,
                "RowKey": RUN_ROW,
                "Status": status,
                "Summary": json.dumps(totals),
                "OwnSummary": json.dumps(own),
                "ExitCode": exit_code,
                "FinishedAt": utc_now(),
                "ClosedBy": by,
                "ClosedMarks": marks,
            },
            mode=update_mode().MERGE,
        )
        self._unlist(parent_run_id)

    def left_open(self, limit: int = 1000) -> list[str]:
        """The sharded runs opened and not closed (some still running, some left by a dead closer)."""
        rows = self.table.query_entities(
            "PartitionKey eq @pk",
            parameters={"pk": OPEN_PARTITION},
            select=["RowKey"],
            results_per_page=limit,
        )
        found: list[str] = []
        for row in rows:
            found.append(str(row["RowKey"]))
            if len(found) >= limit:
                break
        return found

    def unlist_if_closed(self, parent_run_id: str) -> bool:
        """Drop a closed run from the open list (a closer that died between its run record and
        this); True when it was closed."""
        row = self.parent(parent_run_id)
        if row is not None and row.get("ClosedMarks") != row.get("ShardMarks"):
            return False
        self._unlist(parent_run_id)
        return True

    def _unlist(self, parent_run_id: str) -> None:
        self.table.delete_entity(OPEN_PARTITION, parent_run_id)  # the SDK ignores a row already gone

    def shards(self, parent_run_id: str) -> list[dict[str, Any]]:
        """The shard rows, in order, in the API's camelCase."""
        entities = self.table.query_entities(
            "PartitionKey eq @pk and RowKey gt 'shard-' and RowKey lt 'shard.'",
            parameters={"pk": parent_run_id},
        )
        ordered = sorted(entities, key=lambda e: e["RowKey"])
        return [{"shard": int(e["RowKey"][6:]), **camel_row(e)} for e in ordered]

    def parent(self, parent_run_id: str) -> dict[str, Any] | None:
        try:
            return dict(self.table.get_entity(parent_run_id, RUN_ROW))
        except ResourceNotFoundError:
            return None
