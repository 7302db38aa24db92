"""The audit trail: one record per decision, in Table Storage and as one JSON log line.

Tamper evidence: the records of a run are chained (each carries the hash of the one before,
in the order they were decided, parallel steps included), written in batches, and after every
batch the run's head hash is anchored as a new blob in `audit-anchors` (a container that is
immutable in Azure, so whoever can write the table cannot rewrite the anchors). A run's first
record chains to the previous run of the same key. `verify` recomputes the chains against the
anchors and reports records changed, missing, or a lost tail.

Table layout (`RotationAudit`): PartitionKey = the UTC day the run started (YYYYMMDD), RowKey =
inverted record time + run id + inverted sequence, so a partition reads newest first. The
partition "heads" keeps each key's latest chain head. Key material never appears here: only
key ids and versions.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient

from rotation.model.errors import RotationError
from rotation.model.ids import KeyRef

AUDIT_TABLE = "RotationAudit"
ANCHOR_CONTAINER = "audit-anchors"
HEADS_PARTITION = "heads"
log = logging.getLogger("rotation.audit")
_FIELDS = (
    "time",
    "kind",
    "runId",
    "seq",
    "prevHash",
    "actor",
    "keyId",
    "fromVersion",
    "toVersion",
    "target",
    "action",
    "reason",
    "outcome",
    "errorCode",
    "message",
    "hint",
    "durationMs",
    "eventId",
    "source",
    "detail",
)
_ENTITY_NAMES = {f: f[0].upper() + f[1:] for f in (*_FIELDS, "hash")}
_MAX_TEXT = 4000
_MAX_DETAIL = 16000  # characters of JSON; a Table string property holds 32K
MAX_QUERY_DAYS = 92
_MAX_MS = 10**13


class AuditUnavailable(RotationError):
    """The audit store could not be written: the run must stop rather than act unrecorded."""


def canonical_hash(record: dict[str, Any]) -> str:
    content = {k: record.get(k) for k in _FIELDS}
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def key_slug(key: KeyRef | str | None) -> str:
    """A Table-safe, stable name for a key (hosts and names compared case-insensitively)."""
    if key is None:
        return "none"
    text = key.versionless_id if isinstance(key, KeyRef) else str(key)
    return hashlib.sha256(text.lower().encode()).hexdigest()[:32]


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        return value[:_MAX_TEXT] + "…"
    return value


def _bounded_detail(detail: Any) -> Any:
    """`detail` as plain JSON values, small enough for a Table property; done before hashing so
    what is stored is exactly what was hashed."""
    if detail is None:
        return None
    text = json.dumps(detail, sort_keys=True, default=str)
    if len(text) <= _MAX_DETAIL:
        return json.loads(text)
    return {"truncated": True, "preview": text[:_MAX_TEXT]}


class AuditStore:
    """Reads and writes audit records and anchors."""

    def __init__(self, table: TableClient, anchors: ContainerClient) -> None:
        self.table = table
        self.anchors = anchors

    # -- writing ----------------------------------------------------------------------------
    def write(self, partition: str, records: list[dict[str, Any]]) -> None:
        entities = [self._entity(partition, r) for r in records]
        try:
            for start in range(0, len(entities), 100):  # a transaction holds at most 100 entities
                self.table.submit_transaction([("upsert", e) for e in entities[start : start + 100]])
        except AzureError as exc:
            raise AuditUnavailable(f"audit table write failed: {exc}") from exc

    def anchor(self, run_id: str, count: int, head: str, meta: dict[str, Any]) -> None:
        name = f"runs/{run_id}/{count:08d}.json"
        body = json.dumps({"runId": run_id, "count": count, "headHash": head, **meta}).encode()
        try:
            self.anchors.upload_blob(name, body, overwrite=False)
        except ResourceExistsError:
            existing = json.loads(self.anchors.download_blob(name).readall())
            if existing.get("headHash") != head:
                raise AuditUnavailable(f"anchor {name} exists with a different head hash") from None
        except AzureError as exc:
            raise AuditUnavailable(f"audit anchor write failed: {exc}") from exc

    def latest_anchor(self, run_id: str) -> dict[str, Any] | None:
        """The run's most recent anchor (its chain so far), or None for a new run."""
        try:
            names = [b.name for b in self.anchors.list_blobs(name_starts_with=f"runs/{run_id}/")]
            return json.loads(self.anchors.download_blob(max(names)).readall()) if names else None
        except AzureError as exc:
            raise AuditUnavailable(f"audit anchor read failed: {exc}") from exc

    def chain_head(self, key: KeyRef | None) -> tuple[str, str | None]:
        """(head hash, run id) of the key's latest chain; ("", None) when there is none."""
        if key is None:
            return "", None
        try:
            entity = self.table.get_entity(HEADS_PARTITION, key_slug(key))
        except ResourceNotFoundError:
            return "", None
        except AzureError as exc:
            raise AuditUnavailable(f"audit chain head read failed: {exc}") from exc
        return entity.get("HeadHash", ""), entity.get("RunId")

    def set_chain_head(self, key: KeyRef, head: str, run_id: str, count: int) -> None:
        try:
            self.table.upsert_entity(
                {
                    "PartitionKey": HEADS_PARTITION,
                    "RowKey": key_slug(key),
                    "HeadHash": head,
                    "RunId": run_id,
                    "Count": count,
                    "KeyId": key.versionless_id,
                }
            )
        except AzureError as exc:
            raise AuditUnavailable(f"audit chain head write failed: {exc}") from exc

    @staticmethod
    def _entity(partition: str, record: dict[str, Any]) -> dict[str, Any]:
        moment = _parse_iso(record["time"])
        inverted = _MAX_MS - int(moment.timestamp() * 1000)
        row = f"{inverted:013d}-{record['runId']}-{999999 - record['seq']:06d}"
        entity = {"PartitionKey": partition, "RowKey": row}
        for name, column in _ENTITY_NAMES.items():
            value = record.get(name)
            if name == "detail" and value is not None:
                value = json.dumps(value, sort_keys=True)
            if value is not None:
                entity[column] = value  # bounded when recorded: never altered after hashing
        # Case-folded copies for queries (ARM and Key Vault ids compare case-insensitively);
        # derived, so not part of the hash.
        if record.get("keyId"):
            entity["KeyNorm"] = record["keyId"].lower()
        if record.get("target"):
            entity["TargetNorm"] = record["target"].lower()
        return entity

    # -- reading ----------------------------------------------------------------------------
    @staticmethod
    def record_from_entity(entity: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {name: entity.get(column) for name, column in _ENTITY_NAMES.items()}
        if record.get("detail"):
            with contextlib.suppress(ValueError):
                record["detail"] = json.loads(record["detail"])
        record["partition"] = entity.get("PartitionKey")
        return record

    def query(
        self,
        *,
        key: str | None = None,
        target: str | None = None,
        run: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        top: int = 100,
        continuation: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Records matching every filter given, newest first; returns (page, continuation).

        Walks the day partitions from `until` back to `since` (default: 30 days), each read
        newest first; a page ends at a storage page boundary, so it may hold a few more than
        `top` records when the time filter skips some.
        """
        until = until or datetime.now(UTC)
        since = since or until - timedelta(days=30)
        state: dict[str, Any] = (
            _decode_token(continuation) if continuation else {"day": _day(until), "next": None}
        )
        clauses, params = ["PartitionKey eq @pk"], {}
        if until - since > timedelta(days=MAX_QUERY_DAYS):
            raise ValueError(f"the time window is longer than {MAX_QUERY_DAYS} days; narrow since/until")
        for column, value, name in (
            ("KeyNorm", key, "key"),
            ("TargetNorm", target, "target"),
            ("RunId", run, "run"),
        ):
            if value:
                clauses.append(f"{column} eq @{name}")
                params[name] = value.lower()
        day = datetime.strptime(state["day"], "%Y%m%d").replace(tzinfo=UTC)
        token = state["next"]
        first_day = (since - timedelta(days=1)).date()  # a run is filed under the day it started
        if not first_day <= day.date() <= until.date():
            raise ValueError("the continuation token does not belong to this time window")
        results: list[dict[str, Any]] = []
        while day.date() >= first_day:
            pager: Any = self.table.query_entities(  # a PageIterator: it has continuation_token
                " and ".join(clauses),
                parameters={"pk": _day(day), **params},
                results_per_page=max(1, top - len(results)),
            ).by_page(continuation_token=token)
            for page in pager:
                for entity in page:
                    record = self.record_from_entity(entity)
                    if since <= _parse_iso(record["time"]) <= until:
                        results.append(record)
                if len(results) >= top and pager.continuation_token:
                    return results, _encode_token({"day": _day(day), "next": pager.continuation_token})
                if len(results) >= top:
                    break
            day, token = day - timedelta(days=1), None
            if len(results) >= top:
                more = day.date() >= first_day
                return results, _encode_token({"day": _day(day), "next": None}) if more else None
        return results, None

    def run_records(self, run_id: str, partition: str) -> list[dict[str, Any]]:
        entities = self.table.query_entities(
            "PartitionKey eq @pk and RunId eq @run", parameters={"pk": partition, "run": run_id}
        )
        return sorted((self.record_from_entity(e) for e in entities), key=lambda r: r["seq"])

    def anchors_by_run(self, prefix: str = "runs/") -> dict[str, dict[str, Any]]:
        """The latest anchor of every run (the one with the highest count)."""
        latest: dict[str, str] = {}
        for blob in self.anchors.list_blobs(name_starts_with=prefix):
            parts = blob.name.split("/")
            if len(parts) == 3 and (parts[1] not in latest or blob.name > latest[parts[1]]):
                latest[parts[1]] = blob.name
        return {run: json.loads(self.anchors.download_blob(name).readall()) for run, name in latest.items()}


def _encode_token(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def _decode_token(token: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token.encode()))
        datetime.strptime(state["day"], "%Y%m%d")
        if state.get("next") is not None and not isinstance(state["next"], dict):
            raise ValueError
        return state
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError("continuation token is not valid") from exc


class AuditTrail:
    """The chained records of one run, written in batches.

    A run's chain starts with its intake (event received, request queued) and continues
    through every attempt of the queue message: a trail opened for a run id that already has
    anchors picks up where the last anchor ended. A new chain starts from the key's current
    head (the previous run of the same key); `advance_key_head` (runs under the key's lease)
    moves that head forward.
    """

    def __init__(
        self,
        store: AuditStore,
        *,
        run_id: str | None = None,
        key: KeyRef | None = None,
        actor: str = "system",
        advance_key_head: bool = False,
        flush_every: int = 200,
    ) -> None:
        self.store = store
        self.run_id = run_id or str(uuid.uuid4())
        self.key = key.versionless() if key else None
        self.actor = actor
        self._advance_key_head = advance_key_head and self.key is not None
        previous = store.latest_anchor(self.run_id) if run_id else None
        if previous:
            self.partition = previous["partition"]
            self.first_prev, self.prev_run = previous.get("firstPrevHash") or "", previous.get("prevRunId")
            self._head, self._seq = previous["headHash"], previous["count"]
        else:
            self.partition = _day(datetime.now(UTC))
            self.first_prev, self.prev_run = store.chain_head(self.key)
            self._head, self._seq = self.first_prev, 0
        self._pending: list[dict[str, Any]] = []
        self._flush_every = flush_every
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._seq

    @property
    def head(self) -> str:
        return self._head

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Add one decision to the chain (ordered as recorded) and log it as a JSON line."""
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown audit fields {sorted(unknown)}")
        with self._lock:
            record = dict.fromkeys(_FIELDS)
            record.update(fields)
            record.update(
                time=_iso(datetime.now(UTC)),
                kind=kind,
                runId=self.run_id,
                seq=self._seq,
                prevHash=self._head,
                actor=fields.get("actor") or self.actor,
            )
            if record["keyId"] is None and self.key is not None:
                record["keyId"] = self.key.versionless_id
            for name in _FIELDS:
                record[name] = _clip(record[name])
            record["detail"] = _bounded_detail(record["detail"])
            record["hash"] = canonical_hash(record)
            self._head = record["hash"]
            self._seq += 1
            self._pending.append(record)
            should_flush = len(self._pending) >= self._flush_every
        log.info(json.dumps({"audit": record}, default=str, ensure_ascii=False))
        if should_flush:
            self.flush()
        return record

    def flush(self) -> None:
        """Write pending records, then anchor the head. Raises AuditUnavailable."""
        with self._lock:
            batch, self._pending = self._pending, []
            head, count = self._head, self._seq
        if not batch:
            return
        try:
            self.store.write(self.partition, batch)
            self.store.anchor(
                self.run_id,
                count,
                head,
                {
                    "keyId": self.key.versionless_id if self.key else None,
                    "partition": self.partition,
                    "firstPrevHash": self.first_prev,
                    "prevRunId": self.prev_run,
                    "time": _iso(datetime.now(UTC)),
                },
            )
            if self._advance_key_head and self.key is not None:
                self.store.set_chain_head(self.key, head, self.run_id, count)
        except AuditUnavailable:
            with self._lock:  # keep them so a later flush can still write them
                self._pending = batch + self._pending
            raise


@dataclass(frozen=True)
class Finding:
    run_id: str
    problem: str  # edited, missing, lost-tail, broken-link, unanchored
    detail: str


def verify(store: AuditStore, *, run_ids: list[str] | None = None) -> tuple[int, list[Finding]]:
    """Recompute anchored runs' chains (all, or `run_ids`); returns (runs checked, findings)."""
    anchors = store.anchors_by_run()
    selected = [r for r in anchors if run_ids is None or r in run_ids]
    records = {run: store.run_records(run, anchors[run]["partition"]) for run in selected}
    findings: list[Finding] = []
    for run_id in selected:
        findings.extend(_verify_run(run_id, anchors[run_id], records[run_id]))
        findings.extend(_verify_link(store, run_id, anchors, records))
    return len(selected), findings


def _verify_run(run_id: str, anchor: dict[str, Any], records: list[dict[str, Any]]) -> Iterator[Finding]:
    by_seq = {r["seq"]: r for r in records}
    prev = anchor.get("firstPrevHash") or ""
    last = max(by_seq, default=-1)
    for seq in range(anchor["count"]):
        record = by_seq.get(seq)
        if record is None:
            problem = "lost-tail" if seq > last else "missing"
            yield Finding(run_id, problem, f"record {seq} of {anchor['count']} anchored records is missing")
            return
        if canonical_hash(record) != record.get("hash"):
            yield Finding(
                run_id, "edited", f"record {seq} ({record.get('kind')}) was changed after it was written"
            )
            return
        if record.get("prevHash") != prev:
            yield Finding(run_id, "broken-link", f"record {seq} does not chain to record {seq - 1}")
            return
        prev = record["hash"]
    if prev != anchor["headHash"]:
        yield Finding(run_id, "edited", "the chain does not end at the anchored head hash")
    extra = [seq for seq in by_seq if seq >= anchor["count"]]
    if extra:
        yield Finding(run_id, "unanchored", f"{len(extra)} record(s) after the last anchor")


def _verify_link(
    store: AuditStore,
    run_id: str,
    anchors: dict[str, dict[str, Any]],
    records: dict[str, list[dict[str, Any]]],
) -> Iterator[Finding]:
    """A run's first record must chain to a record of the previous run of its key."""
    anchor = anchors[run_id]
    prev_run, first_prev = anchor.get("prevRunId"), anchor.get("firstPrevHash") or ""
    if not prev_run:
        return
    if prev_run not in anchors:
        yield Finding(run_id, "broken-link", f"the previous run {prev_run} of this key has no anchor")
        return
    if prev_run not in records:
        records[prev_run] = store.run_records(prev_run, anchors[prev_run]["partition"])
    if first_prev not in {r.get("hash") for r in records[prev_run]}:
        yield Finding(
            run_id, "broken-link", f"its first record does not chain to any record of run {prev_run}"
        )
