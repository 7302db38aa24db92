"""Audit storage: records in Table Storage (`RotationAudit`), run anchors in blobs (`audit-anchors`).
PartitionKey = the UTC day the run started (YYYYMMDD), RowKey = inverted record time + run id +
inverted sequence (a partition reads newest first); partition "heads" keeps each key's chain
head. Key material never appears here: only key ids and versions."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from rotation.model.errors import TRANSIENT_STATUS, RotationError
from rotation.model.ids import KeyRef
from rotation.model.times import iso, parse_iso
from rotation.storage.audit.record import from_entity, key_slug, to_entity
from rotation.storage.tablebatch import (
    MAX_OPERATIONS,
    TransactionRefused,
    submit_transaction,
    upsert_entities,
)

if TYPE_CHECKING:  # the storage SDKs load with the clients that use them (clients.py)
    from azure.data.tables import TableClient
    from azure.storage.blob import ContainerClient

AUDIT_TABLE = "RotationAudit"
ANCHOR_CONTAINER = "audit-anchors"
HEADS_PARTITION = "heads"
RUN_HEAD_PREFIX = "~run-"  # sorts after every record's RowKey (digits): queries stop before it
RECORDS_ONLY = "RowKey lt '~'"
_HEAD_META = ("FirstPrevHash", "PrevRunId", "FirstPrevAnchor", "KeyId")
log = logging.getLogger("rotation.audit")
MAX_QUERY_DAYS = 92
_DAY = re.compile(r"2\d{3}[01]\d[0-3]\d")
_ANCHOR_NAME = re.compile(r"runs/([^/]+)/(\d{8})\.json")


class AuditUnavailable(RotationError):
    """The audit store could not be written: the run must stop rather than act unrecorded.
    `transient` when the storage call may succeed if tried again (the trail does)."""


class HeadMoved(Exception):  # a state, not a failure: the caller rebases and tries again
    """Another writer appended to the run's chain since this one last saw its head."""


@dataclass(frozen=True)
class RunHead:
    """Where a run's chain ends in the table: its record count and last hash, the row's ETag,
    and what every anchor of the run repeats (its first link, key)."""

    count: int
    head: str
    etag: str | None
    meta: dict[str, Any]


def _unavailable(what: str, exc: AzureError) -> AuditUnavailable:
    # A Table batch is a POST: azure-core's retry does not retry one whose connection broke
    # while reading the answer, so these reach the trail, which may (every write is idempotent).
    transient = isinstance(exc, ServiceRequestError | ServiceResponseError) or (
        isinstance(exc, HttpResponseError) and exc.status_code in TRANSIENT_STATUS
    )
    return AuditUnavailable(f"{what} failed: {exc}", transient=transient)


@dataclass(frozen=True)
class PlanDocument:
    """Where a run's plan is stored and the SHA-256 of its bytes (what the `plan` record holds)."""

    name: str
    digest: str
    steps: int


def partition_day(moment: datetime) -> str:
    """The audit table partition a run started at `moment` is filed under: its UTC day."""
    return moment.astimezone(UTC).strftime("%Y%m%d")


class AuditStore:
    """Reads and writes audit records and anchors."""

    def __init__(self, table: TableClient, anchors: ContainerClient) -> None:
        self.table = table
        self.anchors = anchors

    # -- writing ----------------------------------------------------------------------------
    def write(self, partition: str, records: list[dict[str, Any]]) -> None:
        entities = [to_entity(partition, r) for r in records]
        try:
            for start in range(0, len(entities), MAX_OPERATIONS):
                upsert_entities(self.table, entities[start : start + MAX_OPERATIONS])
        except AzureError as exc:
            raise _unavailable("audit table write", exc) from exc

    def run_head(self, partition: str, run_id: str) -> RunHead | None:
        """The run's chain head row (written with every batch of its records), or None."""
        try:
            entity = self.table.get_entity(partition, RUN_HEAD_PREFIX + run_id)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _unavailable("audit run head read", exc) from exc
        count = entity.get("Count")
        meta = {name[0].lower() + name[1:]: entity.get(name) for name in _HEAD_META}
        return RunHead(
            count if isinstance(count, int) else -1,  # a mangled row matches no writer: it rebases
            str(entity.get("HeadHash") or ""),
            entity.metadata.get("etag"),
            meta,
        )

    def append(
        self,
        partition: str,
        run_id: str,
        records: list[dict[str, Any]],
        known: RunHead | None,
        meta: dict[str, Any],
    ) -> RunHead:
        """Records and the run's new head in one transaction, only if the head is still `known`
        (None: the head row must not exist yet). Raises HeadMoved when another writer appended."""
        if not records or len(records) >= MAX_OPERATIONS:
            raise ValueError(f"a chain append holds 1 to {MAX_OPERATIONS - 1} records")
        last = records[-1]
        meta = {name: meta.get(name[0].lower() + name[1:]) for name in _HEAD_META}
        head = {
            "PartitionKey": partition,
            "RowKey": RUN_HEAD_PREFIX + run_id,
            "HeadRunId": run_id,
            "Count": last["seq"] + 1,
            "HeadHash": last["hash"],
            **meta,
        }
        head = {k: v for k, v in head.items() if v is not None}
        guard: Any = ("update", head, {"etag": known.etag}) if known and known.etag else ("create", head)
        operations: list[Any] = [("upsert", to_entity(partition, r)) for r in records]
        try:
            etags = submit_transaction(self.table, [*operations, guard])
        except TransactionRefused as exc:
            if exc.status_code in (409, 412):
                raise HeadMoved(run_id) from None
            raise _unavailable("audit table write", exc) from exc
        except AzureError as exc:
            raise _unavailable("audit table write", exc) from exc
        kept = {name[0].lower() + name[1:]: value for name, value in meta.items()}
        return RunHead(head["Count"], last["hash"], etags[-1] if etags else None, kept)

    def holds(self, partition: str, record: dict[str, Any]) -> bool:
        """Whether this exact record (its row, with its hash) is stored."""
        try:
            entity = self.table.get_entity(partition, to_entity(partition, record)["RowKey"])
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise _unavailable("audit record read", exc) from exc
        return bool(entity.get("Hash") == record.get("hash"))

    def anchor(self, run_id: str, count: int, head: str, meta: dict[str, Any]) -> None:
        name = anchor_name(run_id, count)
        body = json.dumps({"runId": run_id, "count": count, "headHash": head, **meta}).encode()
        try:
            self.anchors.upload_blob(name, body, overwrite=False)
        except ResourceExistsError:
            existing = json.loads(self.anchors.download_blob(name).readall())
            if existing.get("headHash") != head:
                raise AuditUnavailable(f"anchor {name} exists with a different head hash") from None
        except AzureError as exc:
            raise _unavailable("audit anchor write", exc) from exc

    def put_plan(self, run_id: str, seq: int, document: dict[str, Any]) -> PlanDocument:
        """The run's plan as one blob beside its anchors (immutable in Azure), named by the seq
        of the `plan` record that will pin its digest. Written once: a retry that finds it
        with the same bytes is fine, other bytes are a conflict."""
        name = plan_name(run_id, seq)
        body = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()
        digest = hashlib.sha256(body).hexdigest()
        try:
            self.anchors.upload_blob(name, body, overwrite=False)
        except ResourceExistsError:
            if hashlib.sha256(self.anchors.download_blob(name).readall()).hexdigest() != digest:
                raise AuditUnavailable(f"plan document {name} exists with other content") from None
        except AzureError as exc:
            raise _unavailable("audit plan document write", exc) from exc
        return PlanDocument(name, digest, len(document.get("steps") or ()))

    def plan_digest(self, name: str) -> str | None:
        """SHA-256 of a stored plan document, or None when there is none by that name."""
        try:
            return hashlib.sha256(self.anchors.download_blob(name).readall()).hexdigest()
        except ResourceNotFoundError:
            return None

    def plan_document(self, name: str) -> dict[str, Any] | None:
        """A stored plan document (what a later run reads of one that never finished), or None."""
        try:
            document = json.loads(self.anchors.download_blob(name).readall())
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _unavailable("audit plan document read", exc) from exc
        return document if isinstance(document, dict) else None

    def latest_anchor(self, run_id: str) -> dict[str, Any] | None:
        """The run's most recent anchor (its chain so far), or None for a new run. Only names
        of the form the trail writes count, and the highest count wins."""
        try:
            names = [b.name for b in self.anchors.list_blobs(name_starts_with=f"runs/{run_id}/")]
            counts = [c for c in (anchor_count(n) for n in names) if c is not None]
            if not counts:
                return None
            return json.loads(self.anchors.download_blob(anchor_name(run_id, max(counts))).readall())
        except AzureError as exc:
            raise _unavailable("audit anchor read", exc) from exc

    def chain_head(self, key: KeyRef | None) -> tuple[str, str | None]:
        """(head hash, run id) of the key's latest chain; ("", None) when there is none."""
        head, run_id, _ = self.chain_head_entry(key)
        return head, run_id

    def chain_head_entry(self, key: KeyRef | None) -> tuple[str, str | None, int]:
        """(head hash, run id, record count) of the key's latest chain; ("", None, 0) when none."""
        if key is None:
            return "", None, 0
        try:
            entity = self.table.get_entity(HEADS_PARTITION, key_slug(key))
        except ResourceNotFoundError:
            return "", None, 0
        except AzureError as exc:
            raise _unavailable("audit chain head read", exc) from exc
        return entity.get("HeadHash", ""), entity.get("RunId"), int(entity.get("Count") or 0)

    def chain_heads(self) -> list[dict[str, Any]]:
        """Every key's head entry (partition "heads")."""
        return list(self.table.query_entities("PartitionKey eq @pk", parameters={"pk": HEADS_PARTITION}))

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
            raise _unavailable("audit chain head write", exc) from exc

    # -- reading ----------------------------------------------------------------------------
    @staticmethod
    def record_from_entity(entity: dict[str, Any]) -> dict[str, Any]:
        return from_entity(entity)

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
        if since > until:  # before the token check, which would blame a token never given
            raise ValueError(f"the time window is reversed: since {iso(since)} is after until {iso(until)}")
        state: dict[str, Any] = (
            _decode_token(continuation) if continuation else {"day": partition_day(until), "next": None}
        )
        clauses, params = ["PartitionKey eq @pk", RECORDS_ONLY], {}
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
            pager: Any = self.table.query_entities(  # azure-core's pager, typed as a plain iterator
                " and ".join(clauses),
                parameters={"pk": partition_day(day), **params},
                results_per_page=max(1, top - len(results)),
            ).by_page(continuation_token=token)
            for page in pager:
                for entity in page:
                    record = self.record_from_entity(entity)
                    moment = _record_time(entity, record)
                    if moment is not None and since <= moment <= until:
                        results.append(record)
                if len(results) >= top and pager.continuation_token:
                    return results, _encode_token(
                        {"day": partition_day(day), "next": pager.continuation_token}
                    )
                if len(results) >= top:
                    break
            day, token = day - timedelta(days=1), None
            if len(results) >= top:
                more = day.date() >= first_day
                return results, _encode_token({"day": partition_day(day), "next": None}) if more else None
        return results, None

    def run_records(self, run_id: str, partition: str, kinds: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The run's records in sequence order; only those of `kinds` when given."""
        only = " or ".join(f"Kind eq @k{i}" for i in range(len(kinds)))
        # spaces around the brackets: the SDK finds @names by splitting the filter on spaces
        entities = self.table.query_entities(
            f"PartitionKey eq @pk and RunId eq @run and {RECORDS_ONLY}"
            + (f" and ( {only} )" if only else ""),
            parameters={"pk": partition, "run": run_id, **{f"k{i}": k for i, k in enumerate(kinds)}},
        )
        records = [self.record_from_entity(e) for e in entities]
        return sorted(records, key=lambda r: r["seq"] if isinstance(r["seq"], int) else 10**6)  # bad last

    def run_ids_starting_with(self, prefix: str, limit: int = 10) -> list[str]:
        """Run ids in the trail (anchored, or with records) that start with `prefix`."""
        found = {
            name.split("/")[1]
            for name in (b.name for b in self.anchors.list_blobs(name_starts_with=f"runs/{prefix}"))
            if name.count("/") == 2
        }
        rows = self.table.query_entities(
            "RunId ge @lo and RunId lt @hi", parameters={"lo": prefix, "hi": prefix + "~"}, select=["RunId"]
        )
        for entity in rows:
            if len(found) >= limit:
                break
            found.add(str(entity["RunId"]))
        return sorted(found)[:limit]

    def all_anchors(self, prefix: str = "runs/") -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """Every anchor blob of every run, as (blob name, body), by run id in name order."""
        found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for blob in self.anchors.list_blobs(name_starts_with=prefix):
            parts = blob.name.split("/")
            if len(parts) != 3:
                continue
            try:
                body = json.loads(self.anchors.download_blob(blob.name).readall())
            except ValueError:
                body = {}
            found.setdefault(parts[1], []).append((blob.name, body if isinstance(body, dict) else {}))
        return {run: sorted(items) for run, items in found.items()}

    def all_records(self, run_ids: list[str] | None = None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """(RowKey, record) of every record outside the heads partition, by run id; one table
        scan, or one query per run when `run_ids` is given (a record filed in any partition)."""
        if run_ids is None:
            pages = [
                self.table.query_entities(
                    f"PartitionKey ne @pk and {RECORDS_ONLY}", parameters={"pk": HEADS_PARTITION}
                )
            ]
        else:
            pages = [
                self.table.query_entities(
                    f"PartitionKey ne @pk and RunId eq @run and {RECORDS_ONLY}",
                    parameters={"pk": HEADS_PARTITION, "run": run},
                )
                for run in run_ids
            ]
        found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for entities in pages:
            for entity in entities:
                record = self.record_from_entity(entity)
                # the query columns, for verify to hold against the hashed content
                record["stored"] = {c: entity.get(c) for c in ("KeyNorm", "TargetNorm")}
                found.setdefault(str(record.get("runId")), []).append((entity["RowKey"], record))
        return found


def _record_time(entity: dict[str, Any], record: dict[str, Any]) -> datetime | None:
    """The record's time, or None (and a warning) for a row whose Time is not the ISO text the
    trail writes: the row is skipped, and `audit verify` reports it as malformed."""
    text = record.get("time")
    try:
        if isinstance(text, str):
            moment = parse_iso(text)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        pass
    log.warning(
        "audit row %s/%s skipped: its Time is not an ISO 8601 text (audit verify reports it)",
        entity.get("PartitionKey"),
        entity.get("RowKey"),
    )
    return None


def anchor_name(run_id: str, count: int) -> str:
    return f"runs/{run_id}/{count:08d}.json"


def plan_name(run_id: str, seq: int) -> str:
    return f"plans/{run_id}/{seq:08d}.json"


def anchor_count(name: str) -> int | None:
    """The count an anchor's blob name gives, or None when the name is not one the trail writes."""
    match = _ANCHOR_NAME.fullmatch(name)
    return int(match.group(2)) if match else None


def _encode_token(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def _decode_token(token: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(state, dict) or not _DAY.fullmatch(str(state["day"])):
            raise ValueError
        datetime.strptime(state["day"], "%Y%m%d")
        following = state.get("next")
        if following is not None and not (  # handed to the Table SDK: only string pairs
            isinstance(following, dict) and all(isinstance(v, str) for v in following.values())
        ):
            raise ValueError
        return state
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValueError("continuation token is not valid") from exc
