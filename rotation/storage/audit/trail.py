"""The chained records of one run (see the package docstring for the tamper evidence)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import tenacity

from rotation.model.ids import KeyRef
from rotation.model.times import iso, parse_iso_or_none
from rotation.storage.audit.record import FIELDS, SCHEME, bounded_detail, canonical_hash, clip
from rotation.storage.audit.store import (
    AuditStore,
    AuditUnavailable,
    HeadMoved,
    PlanDocument,
    RunHead,
    anchor_name,
    log,
    partition_day,
)
from rotation.storage.tablebatch import MAX_OPERATIONS

if TYPE_CHECKING:
    from rotation.model.request import RotationRequest

_KNOWN = frozenset(FIELDS)
_CHUNK = MAX_OPERATIONS - 1  # records per transaction: the run's head row is the last operation
_MAX_REBASES = 20


class AuditTrail:
    """The chained records of one run, written in batches.

    A run's chain starts with its intake (event received, request queued) and continues
    through every attempt of the queue message: a trail opened for a run id that already has
    records picks up where the run's head row (or, for runs written before head rows, its last
    anchor) ended. A new chain starts from the key's current head (the previous run of the same
    key); `advance_key_head` (runs under the key's lease) moves that head forward.

    Several trails may write one run at once (the intake's and the worker's, when the worker
    dequeues before the intake's flush). Each transaction of records also replaces the run's
    head row if its ETag is the one this trail last saw; when another trail appended first, the
    records not yet written are re-chained after its head (new sequence numbers and hashes,
    logged again) and written then. `opened` (the request's enqueue time) picks the day
    partition of a new run, so every trail of one request looks for the head in the same place.

    Recording never waits on storage: once `flush_every` records are pending, a background
    thread writes them (one flush at a time, so anchors are written in chain order); `flush()`
    and `checkpoint()` write synchronously. A flush whose storage call fails transiently (a
    reset connection, 5xx, 429) is tried again with backoff for up to `retry_seconds` (or what
    `remaining` says is left of the run); the records stay pending until written, so a later
    flush still writes them. Only a flush that fails past that raises AuditUnavailable, and a
    background failure is raised by the next `record()` or `flush()`.
    """

    @classmethod
    def for_request(cls, store: AuditStore, request: RotationRequest, **options: Any) -> AuditTrail:
        """The trail of a queued request's run: its id, key and actor, filed under the day the
        request was queued (so the intake, the worker and the run all find the same chain)."""
        return cls(
            store,
            run_id=request.request_id,
            key=request.key,
            actor=request.actor,
            opened=request.enqueued_at,
            **options,
        )

    def __init__(
        self,
        store: AuditStore,
        *,
        run_id: str | None = None,
        key: KeyRef | None = None,
        actor: str = "system",
        advance_key_head: bool = False,
        flush_every: int = 200,
        retry_seconds: float = 30.0,
        remaining: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        opened: str | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id or str(uuid.uuid4())
        self.key = key.versionless() if key else None
        self.actor = actor
        self._advance_key_head = advance_key_head and self.key is not None
        previous = store.latest_anchor(self.run_id) if run_id else None
        started = parse_iso_or_none(opened) or datetime.now(UTC)
        self.partition = previous["partition"] if previous else partition_day(started)
        self._known = store.run_head(self.partition, self.run_id) if run_id else None
        if self._known is not None:
            self._adopt(self._known)
        elif previous:  # a run written before head rows: its last anchor is where it ended
            self.first_prev, self.prev_run = previous.get("firstPrevHash") or "", previous.get("prevRunId")
            self._head, self._seq = previous["headHash"], previous["count"]
            self._first_prev_anchor: str | None = None
            self._prev_anchor: str | None = anchor_name(self.run_id, self._seq)
        else:
            self.first_prev, self.prev_run, head_count = store.chain_head_entry(self.key)
            self._head, self._seq = self.first_prev, 0
            # Each anchor names the one before it (of this run, or the key's head), so the
            # anchors of one key form a chain that verify can walk.
            self._first_prev_anchor = anchor_name(self.prev_run, head_count) if self.prev_run else None
            self._prev_anchor = self._first_prev_anchor
        self._pending: list[dict[str, Any]] = []
        self._flush_every = flush_every
        self._retry_seconds, self._remaining, self._sleep = retry_seconds, remaining, sleep
        self._lock = threading.Lock()  # the chain and the pending list
        self._writing = threading.Lock()  # one flush at a time: anchors in chain order
        self._background: threading.Thread | None = None
        self._failure: AuditUnavailable | None = None

    @property
    def count(self) -> int:
        return self._seq

    @property
    def head(self) -> str:
        return self._head

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Add one decision to the chain (ordered as recorded) and log it as a JSON line."""
        unknown = fields.keys() - _KNOWN
        if unknown:
            raise ValueError(f"unknown audit fields {sorted(unknown)}")
        self._raise_failure()
        with self._lock:
            record = dict.fromkeys(FIELDS)
            record.update(fields)
            record.update(
                time=iso(datetime.now(UTC)),
                kind=kind,
                runId=self.run_id,
                seq=self._seq,
                prevHash=self._head,
                actor=fields.get("actor") or self.actor,
                scheme=SCHEME,
                partition=self.partition,
            )
            if record["keyId"] is None and self.key is not None:
                record["keyId"] = self.key.versionless_id
            for name in FIELDS:
                record[name] = clip(record[name])
            record["detail"] = bounded_detail(record["detail"])
            record["hash"] = canonical_hash(record)
            self._head = record["hash"]
            self._seq += 1
            self._pending.append(record)
            thread = None
            if len(self._pending) >= self._flush_every and self._background is None:
                thread = self._background = threading.Thread(target=self._flush_behind, daemon=True)
        if log.isEnabledFor(logging.INFO):  # the line is built only when it is emitted
            log.info(json.dumps({"audit": record}, default=str, ensure_ascii=False))
        if thread is not None:
            thread.start()
        return record

    def attach_plan(self, document: dict[str, Any]) -> PlanDocument:
        """Store the run's plan as one immutable document (one blob, retried like a flush); the
        `plan` record then carries its name and digest, so the chain pins it."""
        with self._lock:
            seq = self._seq
        return self._retried(lambda: self.store.put_plan(self.run_id, seq, document), "plan document")

    def checkpoint(self, record: dict[str, Any]) -> None:
        """Make the chain durable through `record` (and anchor it); later records stay pending.
        The records before any write: O(1) storage calls however long the run's plan is."""
        self._failure = None  # asked for in the run's own thread: try again
        self._write_through(record["seq"] + 1)
        self._raise_failure()

    def flush(self) -> None:
        """Write every pending record, then anchor the head. Raises AuditUnavailable."""
        self._failure = None  # asked for in the run's own thread: try again
        self._write_through(None)
        self._raise_failure()

    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is not None:
            raise AuditUnavailable(str(failure), transient=failure.transient) from failure

    def _flush_behind(self) -> None:
        """The background flusher: writes while a full batch is pending, then ends."""
        try:
            while len(self._pending) >= self._flush_every and self._failure is None:
                self._write_through(None)
        except AuditUnavailable as exc:
            self._failure = exc
        except Exception as exc:  # noqa: BLE001 - reported to the run by its next record or flush
            self._failure = AuditUnavailable(f"audit flush failed: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._background = None
            if len(self._pending) >= self._flush_every and self._failure is None:
                with self._lock:  # records arrived while this thread was ending
                    if self._background is None:
                        self._background = threading.Thread(target=self._flush_behind, daemon=True)
                        self._background.start()

    def _write_through(self, upto: int | None) -> None:
        with self._writing:
            with self._lock:
                cut = len(self._pending) if upto is None else sum(r["seq"] < upto for r in self._pending)
                batch, self._pending = self._pending[:cut], self._pending[cut:]
            if not batch:
                return
            try:
                self._retried(lambda: self._write(batch), "flush")
            except BaseException:  # an outage, or the door's budget ran out: keep them for a later flush
                with self._lock:
                    self._pending = batch + self._pending
                raise
            self._prev_anchor = anchor_name(self.run_id, batch[-1]["seq"] + 1)  # the next one names it

    def _write(self, batch: list[dict[str, Any]]) -> None:
        """One batch: records with the run's head (chunks a retry skips once written), anchor (a
        retry finds it written with the same head), key head."""
        for start in range(0, len(batch), _CHUNK):
            self._commit(batch[start : start + _CHUNK], batch[start + _CHUNK :])
        head, count = batch[-1]["hash"], batch[-1]["seq"] + 1
        self.store.anchor(self.run_id, count, head, self._meta())
        if self._advance_key_head and self.key is not None:
            self.store.set_chain_head(self.key, head, self.run_id, count)

    def _commit(self, chunk: list[dict[str, Any]], rest: list[dict[str, Any]]) -> None:
        """Append `chunk` where the run's chain ends now, re-chaining it (and what follows) after
        another writer's records when that writer appended first."""
        for _ in range(_MAX_REBASES):
            known = self._known
            if known is not None and chunk[0]["seq"] < known.count:
                return  # written by an earlier try of this flush
            if known is None or (known.count, known.head) == (chunk[0]["seq"], chunk[0]["prevHash"]):
                try:
                    self._known = self.store.append(self.partition, self.run_id, chunk, known, self._meta())
                    return
                except HeadMoved:
                    pass
            current = self.store.run_head(self.partition, self.run_id)
            if self.store.holds(self.partition, chunk[-1]):
                self._known = current  # an earlier try wrote it; its answer was lost
                return
            if current is None:
                raise AuditUnavailable(f"the audit head row of run {self.run_id} disappeared")
            self._rebase(current, [*chunk, *rest])
        raise AuditUnavailable(f"the audit chain of run {self.run_id} kept moving under other writers")

    def _rebase(self, current: RunHead, unwritten: list[dict[str, Any]]) -> None:
        """Re-chain the records not yet written after `current` (their dicts, so callers holding
        a record see its final sequence number), and take the run's first link from it."""
        with self._lock:
            self._known = current
            self._adopt(current)
            for record in [*unwritten, *self._pending]:
                record.update(seq=self._seq, prevHash=self._head)
                record["hash"] = canonical_hash(record)
                self._head, self._seq = record["hash"], self._seq + 1
                log.info(json.dumps({"audit": record, "rechained": True}, default=str, ensure_ascii=False))
        log.warning(
            "audit run %s: another writer appended first; records re-chained after %d",
            self.run_id,
            current.count,
        )

    def _adopt(self, current: RunHead) -> None:
        if current.count < 0 or not current.head:  # edited by hand: never number records from it
            raise AuditUnavailable(f"the audit head row of run {self.run_id} is malformed")
        meta = current.meta
        self.first_prev, self.prev_run = meta.get("firstPrevHash") or "", meta.get("prevRunId")
        self._first_prev_anchor = meta.get("firstPrevAnchor")
        self._head, self._seq = current.head, current.count
        self._prev_anchor = (
            anchor_name(self.run_id, current.count) if current.count else self._first_prev_anchor
        )

    def _meta(self) -> dict[str, Any]:
        """What every anchor of the run repeats, and the head row keeps for the run's other writers."""
        return {
            "keyId": self.key.versionless_id if self.key else None,
            "partition": self.partition,
            "firstPrevHash": self.first_prev,
            "prevRunId": self.prev_run,
            "firstPrevAnchor": self._first_prev_anchor,
            "prevAnchor": self._prev_anchor,
            "time": iso(datetime.now(UTC)),
            "advancesHead": self._advance_key_head,  # verify holds the key's head to the newest such
        }

    def _retried[T](self, fn: Callable[[], T], what: str) -> T:
        """`fn` again after a transient storage failure, with jittered backoff, while the retry
        window (and the run's remaining time) lasts."""
        window = self._retry_seconds
        if self._remaining is not None:
            window = min(window, max(0.0, self._remaining()))
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, AuditUnavailable) and exc.transient
            ),
            wait=tenacity.wait_exponential_jitter(multiplier=0.5, max=8.0, jitter=0.5),
            stop=lambda state: _spent(state) + state.upcoming_sleep >= window,
            sleep=self._sleep,
            before_sleep=lambda state: log.warning(
                "audit %s failed (attempt %d), retrying in %.1fs: %s",
                what,
                state.attempt_number,
                state.upcoming_sleep,
                state.outcome.exception() if state.outcome else None,
            ),
            reraise=True,
        )
        return retrying(fn)


def _spent(state: tenacity.RetryCallState) -> float:
    """Time used by the attempts so far: the wall clock, or the waits when `sleep` did not
    take real time (an injected clock)."""
    return max(state.seconds_since_start or 0.0, state.idle_for)
