"""What this system wrote to each consumer, and the reverts found since: rows in `RotationLedger`.

A key's rows are spread over sixteen partitions, `written-<key slug>-<c>` where `c` is the first
hex digit of the row's RowKey (`row_key` of the lower-cased resource id), so a run reads
everything it needs about a key with one query (a PartitionKey range) and writes a run's
verified targets in transactions of up to 100 per partition (storage/tablebatch.py). Why
sixteen: a run of 10,000 targets wrote 10,000 rows into one partition at its end, and a Table
service that finds a row by scanning its partition (Azurite does) took 100 s for it; Azure's
Tables are per partition too (a partition is served by one server). Rows written before the
split, in `written-<key slug>` itself, are still read: the range holds that partition, and a
row of a bucket merges over the same row there (newer columns win, older ones kept), as
insert-or-merge would have.

A row holds the version last verified on the consumer (Version, RunId, WrittenAt) and the last
revert found (RevertedTo, RevertedFrom, RevertedAt, RevertedBy, RevertCorrelationId,
RevertOperation), which `versions disable` and `inventory` read. Merging keeps both halves: a
roll-forward after a revert does not erase the revert.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rotation.concurrency import submit_in_context
from rotation.model.ids import KeyRef
from rotation.model.times import iso, parse_iso_or_none
from rotation.storage.audit import key_slug
from rotation.storage.ledger import row_key
from rotation.storage.tablebatch import MAX_OPERATIONS, upsert_entities

if TYPE_CHECKING:
    from azure.data.tables import TableClient

log = logging.getLogger("rotation.reverts")


def partition(key: KeyRef) -> str:
    """The key's partition before the split: rows there are read, never written."""
    return f"written-{key_slug(key.versionless())}"


def bucket(key: KeyRef, row: str) -> str:
    """The partition a row of the key is written to: its RowKey's first hex digit."""
    return f"{partition(key)}-{row[0]}"


@dataclass(frozen=True)
class Written:
    """One consumer's row."""

    target: str
    version: str | None  # last verified by this system
    run_id: str | None
    written_at: datetime | None
    reverted_to: str | None = None
    reverted_from: str | None = None
    reverted_at: datetime | None = None
    reverted_by: str | None = None  # caller from the activity log, or None when unknown
    correlation_id: str | None = None
    operation: str | None = None

    @classmethod
    def of(cls, entity: Mapping[str, Any]) -> Written:
        return cls(
            target=str(entity.get("Target") or ""),
            version=entity.get("Version"),
            run_id=entity.get("RunId"),
            written_at=parse_iso_or_none(entity.get("WrittenAt")),
            reverted_to=entity.get("RevertedTo"),
            reverted_from=entity.get("RevertedFrom"),
            reverted_at=parse_iso_or_none(entity.get("RevertedAt")),
            reverted_by=entity.get("RevertedBy") or None,
            correlation_id=entity.get("RevertCorrelationId") or None,
            operation=entity.get("RevertOperation") or None,
        )

    def revert_dict(self) -> dict[str, Any] | None:
        """The last revert in the JSON contract's camelCase (None: never reverted)."""
        if self.reverted_to is None:
            return None
        return {
            "toVersion": self.reverted_to,
            "fromVersion": self.reverted_from,
            "at": iso(self.reverted_at) if self.reverted_at else None,
            "by": self.reverted_by,
            "correlationId": self.correlation_id,
            "operation": self.operation,
        }


@dataclass(frozen=True)
class RevertRow:
    """A revert to store on the consumer's row."""

    target: str
    to_version: str
    from_version: str
    at: datetime
    by: str | None
    correlation_id: str | None
    operation: str | None


class WrittenStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def read(self, key: KeyRef) -> dict[str, Written]:
        """Every consumer row of the key, by lower-cased resource id: one query."""
        first = partition(key)
        # The slug has a fixed length: no other key's partition falls between these two.
        entities = self.table.query_entities(
            "PartitionKey ge @first and PartitionKey lt @after",
            parameters={"first": first, "after": f"{first}."},  # "." sorts right after "-"
        )
        merged: dict[str, dict[str, Any]] = {}
        for entity in entities:  # in PartitionKey order: the old partition first, then the buckets
            merged.setdefault(entity["RowKey"], {}).update(entity)
        rows = (Written.of(e) for e in merged.values())
        return {row.target.lower(): row for row in rows if row.target}

    def record_verified(
        self, key: KeyRef, targets: Iterable[tuple[str, str]], run_id: str, at: datetime
    ) -> None:
        """(resource id, version) pairs this run verified."""
        self._upsert(
            key,
            [
                {"Target": target, "Version": version.lower(), "RunId": run_id, "WrittenAt": iso(at)}
                for target, version in targets
            ],
        )

    def record_reverts(self, key: KeyRef, reverts: Iterable[RevertRow]) -> None:
        self._upsert(
            key,
            [
                {
                    "Target": r.target,
                    "RevertedTo": r.to_version.lower(),
                    "RevertedFrom": r.from_version.lower(),
                    "RevertedAt": iso(r.at),
                    # "" (not left out) so an unknown caller replaces an earlier revert's
                    "RevertedBy": (r.by or "")[:256],
                    "RevertCorrelationId": (r.correlation_id or "")[:128],
                    "RevertOperation": (r.operation or "")[:256],
                }
                for r in reverts
            ],
        )

    def _upsert(self, key: KeyRef, rows: list[dict[str, Any]]) -> None:
        by_partition: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            rk = row_key(row["Target"].lower())
            entity = {"PartitionKey": bucket(key, rk), "RowKey": rk, "KeyId": key.versionless_id, **row}
            # Insert-or-merge: a None column is left out, so it keeps what the row had.
            by_partition.setdefault(entity["PartitionKey"], []).append(
                {k: v for k, v in entity.items() if v is not None}
            )
        for entities in by_partition.values():  # a transaction holds one partition's rows
            for start in range(0, len(entities), MAX_OPERATIONS):
                upsert_entities(self.table, entities[start : start + MAX_OPERATIONS])


# VerifiedAsTheyGo writes what waited every few seconds, or at once when this many wait: each
# write is a transaction per partition touched (up to sixteen), so writing every version as it
# came made a transaction of one or two rows per partition, and at N = 1,000 cost the run
# 1.4 ms of CPU a consumer. A run killed halfway loses at most the last few seconds' versions.
WRITE_EVERY_SECONDS = 10.0
WRITE_AT_ROWS = 16 * MAX_OPERATIONS


class VerifiedAsTheyGo:
    """A run's verified versions written while the run goes, not all after its last target: a
    run killed halfway (a host recycled, a deployment) keeps what it verified, and a long run
    does not end with a transaction per hundred targets in a row. Group commit in a background
    thread: the first version starts it, and it writes what waited when `every` seconds have
    passed or `at_rows` wait, whichever is first, then waits again. Thread-safe: `add` is called
    from the run's worker threads. `close` writes what waits at once, and says which (target,
    version) pairs are stored. After a write fails, no more are tried (the storage is likely
    down: a failed call a target would only add to it); the run's end (`RevertWatch.remember`)
    writes whatever is missing."""

    def __init__(
        self,
        store: WrittenStore,
        key: KeyRef,
        run_id: str,
        *,
        every: float = WRITE_EVERY_SECONDS,
        at_rows: int = WRITE_AT_ROWS,
    ) -> None:
        self.store, self.key, self.run_id = store, key, run_id
        self.every, self.at_rows = every, at_rows
        self._waiting: list[tuple[str, str]] = []
        self._stored: set[tuple[str, str]] = set()
        self._writing = self._failed = self._closing = False
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="written-rows")

    def add(self, target: str, version: str) -> None:
        with self._lock:
            if self._closing:
                return  # a step cut at a stop that ended after the run did: the run wrote what it had
            self._waiting.append((target, version))
            if self._failed:
                return  # the run's end writes it
            if self._writing:
                if len(self._waiting) >= self.at_rows:
                    self._ready.notify()
                return
            self._writing = True
        submit_in_context(self._pool, self._write_waiting)

    def close(self) -> set[tuple[str, str]]:
        with self._lock:
            self._closing = True
            self._ready.notify()
        self._pool.shutdown(wait=True)
        with self._lock:
            return set(self._stored)

    def _write_waiting(self) -> None:
        while True:
            with self._lock:
                self._ready.wait_for(lambda: self._closing or len(self._waiting) >= self.at_rows, self.every)
                batch, self._waiting = self._waiting, []
                if not batch:
                    self._writing = False
                    return
            try:
                self.store.record_verified(self.key, batch, self.run_id, datetime.now(UTC))
            except Exception as exc:  # noqa: BLE001 - written at the run's end
                log.warning(
                    "verified versions of %s left for the run's end: %s", self.key.versionless_id, exc
                )
                with self._lock:
                    self._failed, self._writing = True, False
                return
            with self._lock:
                self._stored.update(batch)
