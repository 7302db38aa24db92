"""`audit verify`: recompute the chains of anchored runs and report what does not hold."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rotation.storage.audit.store import AuditStore, canonical_hash


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
