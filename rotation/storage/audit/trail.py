"""The chained records of one run (see the package docstring for the tamper evidence)."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from rotation.model.ids import KeyRef
from rotation.storage.audit.store import (
    _FIELDS,
    AuditStore,
    AuditUnavailable,
    _bounded_detail,
    _clip,
    _day,
    _iso,
    anchor_name,
    canonical_hash,
    log,
)


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
            self._prev_anchor: str | None = anchor_name(self.run_id, self._seq)
        else:
            self.partition = _day(datetime.now(UTC))
            self.first_prev, self.prev_run, head_count = store.chain_head_entry(self.key)
            self._head, self._seq = self.first_prev, 0
            # Each anchor names the one before it (of this run, or the key's head), so the
            # anchors of one key form a chain that verify can walk.
            self._prev_anchor = anchor_name(self.prev_run, head_count) if self.prev_run else None
        self._anchored = self._seq
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
                    "prevAnchor": self._prev_anchor,
                    "time": _iso(datetime.now(UTC)),
                },
            )
            with self._lock:  # flushes may overlap: the newest anchor is the one to name next
                if count > self._anchored:
                    self._anchored, self._prev_anchor = count, anchor_name(self.run_id, count)
            if self._advance_key_head and self.key is not None:
                self.store.set_chain_head(self.key, head, self.run_id, count)
        except AuditUnavailable:
            with self._lock:  # keep them so a later flush can still write them
                self._pending = batch + self._pending
            raise
