"""A run's step rows written while the run goes, not all at its end.

A run over 10,000 targets would otherwise end with a hundred transactions in a row after its
last target finished. Here each finished step's row waits with the others of its partition
(runs.py: a thousand steps to a partition) and a transaction of 100 goes out, in the background
and one at a time, as soon as a partition has that many. `RunStore.finished` then writes only
the rows still missing or changed since (a step whose result a later wave replaced), so a
background write that failed costs nothing but its retry there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from azure.core.exceptions import AzureError

from rotation.concurrency import submit_in_context
from rotation.storage.runs import RunStore, step_row, upsert
from rotation.storage.tablebatch import submit_transaction

log = logging.getLogger("rotation.runs")
TRANSACTION = 100  # the Table service's limit of operations in one transaction


class StepRowWriter:
    """Thread-safe: `add` is called from the run's worker threads as their steps finish."""

    def __init__(self, store: RunStore, run_id: str, targets: Sequence[str]) -> None:
        self.store, self.run_id = store, run_id
        self._index = {target: index for index, target in enumerate(targets, start=1)}
        self._waiting: dict[str, list[dict[str, Any]]] = {}
        self._written: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="step-rows")
        self._pending: list[Future[None]] = []
        self._closed = False

    def add(self, step: dict[str, Any]) -> None:
        index = self._index.get(step.get("target") or "")
        if index is None:
            return
        row = step_row(self.run_id, index, step)
        with self._lock:
            if self._closed:
                return  # a step cut at a stop that ended after the run did: the run wrote what it had
            waiting = self._waiting.setdefault(row["PartitionKey"], [])
            waiting.append(row)
            if len(waiting) < TRANSACTION:
                return
            batch = self._waiting.pop(row["PartitionKey"])
            self._pending.append(submit_in_context(self._pool, lambda: self._write(batch)))

    def close(self) -> dict[str, dict[str, Any]]:
        """Wait for the writes in flight; the rows written, by RowKey (for RunStore.finished)."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True)
        with self._lock:
            return dict(self._written)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            submit_transaction(self.store.table, [upsert(row) for row in batch])
        except AzureError as exc:  # left for RunStore.finished, which writes what is missing
            log.warning("step rows of run %s not written yet: %s", self.run_id, exc)
            return
        with self._lock:
            self._written.update({row["RowKey"]: row for row in batch})
