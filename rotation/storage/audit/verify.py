"""`audit verify`: recompute every run's chain and hold it against every anchor the run has.

What this proves and against whom is in docs/architecture.md ("What audit verify proves").
In short: anchors cannot be rewritten or deleted (an immutable container), so each one pins
the chain at the count it names; a rewrite of anchored records contradicts the oldest anchor
after the edit, however many later hashes and anchors the forger recomputes and adds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rotation.storage.audit.record import UnknownScheme, canonical_hash, key_slug
from rotation.storage.audit.store import AuditStore, anchor_count, anchor_name

Rows = list[tuple[str, dict[str, Any]]]  # (RowKey, record)
_META = ("keyId", "partition", "firstPrevHash", "prevRunId")


@dataclass(frozen=True)
class Finding:
    run_id: str
    # edited, missing, lost-tail, broken-link, unanchored, duplicate, bad-anchor, misfiled,
    # unanchored-run, head-mismatch, plan-document
    problem: str
    detail: str


@dataclass
class _Run:
    run_id: str
    anchors: list[tuple[int, dict[str, Any]]]  # (count, body), by count
    rows: Rows
    chain: list[str] = field(default_factory=list)  # hash after each record, as verified


def verify(store: AuditStore, *, run_ids: list[str] | None = None) -> tuple[int, list[Finding]]:
    """Check every run (or `run_ids`); returns (runs checked, findings). Any finding is a
    reason to exit 4."""
    anchors = store.all_anchors()
    rows = store.all_records(run_ids)
    wanted = sorted(set(anchors) | set(rows)) if run_ids is None else sorted(set(run_ids))
    findings: list[Finding] = []
    runs: dict[str, _Run] = {}
    for run_id in wanted:
        if run_id not in anchors:
            if rows.get(run_id):
                findings.append(
                    Finding(
                        run_id, "unanchored-run", f"{len(rows[run_id])} record(s) of a run with no anchor"
                    )
                )
            continue
        run, problems = _anchors_of(run_id, anchors[run_id], rows.get(run_id, []))
        findings.extend(problems)
        if run is None:
            continue
        runs[run_id] = run
        findings.extend(_verify_chain(run))
        findings.extend(_verify_plans(store, run))
    for run in runs.values():
        findings.extend(_verify_link(store, run, anchors, runs))
    if run_ids is None:
        findings.extend(_verify_heads(store, anchors))
    return len(runs), findings


def _anchors_of(
    run_id: str, blobs: list[tuple[str, dict[str, Any]]], rows: Rows
) -> tuple[_Run | None, list[Finding]]:
    """The run's anchors by count, after checking names, counts and shared metadata agree."""
    problems: list[Finding] = []
    anchors: list[tuple[int, dict[str, Any]]] = []
    for name, body in blobs:
        count = anchor_count(name)
        if (
            count is None
            or body.get("count") != count
            or body.get("runId") != run_id
            or not body.get("headHash")
        ):
            problems.append(Finding(run_id, "bad-anchor", f"anchor {name} does not match its name or run"))
            continue
        anchors.append((count, body))
    if not anchors:
        return None, problems
    anchors.sort(key=lambda item: item[0])
    first = anchors[0][1]
    for count, body in anchors[1:]:
        differing = [m for m in _META if (body.get(m) or None) != (first.get(m) or None)]
        if differing:
            problems.append(
                Finding(
                    run_id, "bad-anchor", f"anchor {count} disagrees with the first on {', '.join(differing)}"
                )
            )
    partition = first.get("partition")
    misfiled = [row for row, record in rows if record.get("partition") != partition]
    if misfiled:
        problems.append(
            Finding(run_id, "misfiled", f"{len(misfiled)} record(s) outside the run's partition {partition}")
        )
    kept = [(row, record) for row, record in rows if record.get("partition") == partition]
    return _Run(run_id, anchors, kept), problems


def _verify_chain(run: _Run) -> Iterator[Finding]:
    """Walk the chain from its first link; every anchor must name the hash at its count."""
    by_seq: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for row, record in run.rows:
        seq = record.get("seq")
        if isinstance(seq, int):
            by_seq.setdefault(seq, []).append((row, record))
    last_count = run.anchors[-1][0]
    heads = {body["headHash"] for _, body in run.anchors}
    prev = run.anchors[0][1].get("firstPrevHash") or ""
    for seq in range(last_count):
        candidates = by_seq.get(seq, [])
        if not candidates:
            problem = "lost-tail" if seq > max(by_seq, default=-1) else "missing"
            yield Finding(run.run_id, problem, f"record {seq} of {last_count} anchored records is missing")
            return
        genuine = [c for c in candidates if c[1].get("prevHash") == prev and _hash_holds(c[1])]
        # Of two records that both chain here, the real one is what the next record (or an
        # anchor) links to.
        linked = heads | {c[1].get("prevHash") for c in by_seq.get(seq + 1, [])}
        genuine.sort(key=lambda c: c[1].get("hash") not in linked)
        if len(candidates) > 1:
            others = [row for row, _ in candidates if not genuine or row != genuine[0][0]]
            yield Finding(
                run.run_id,
                "duplicate",
                f"record {seq} is stored {len(candidates)} times (rows {', '.join(others)})",
            )
        if not genuine:
            yield from _why_not_chained(run.run_id, seq, candidates[0][1], prev)
            return
        prev = genuine[0][1]["hash"]
        run.chain.append(prev)
    yield from _against_anchors(run)
    extra = sorted(seq for seq in by_seq if seq >= last_count or seq < 0)
    if extra:
        yield Finding(run.run_id, "unanchored", f"{len(extra)} record(s) after the last anchor")


def _verify_plans(store: AuditStore, run: _Run) -> Iterator[Finding]:
    """A `plan` record pins its plan document by digest: the document must be there, this
    run's, and hold exactly those bytes (the record itself is proven by the chain)."""
    for _, record in run.rows:
        detail = record.get("detail")
        if record.get("kind") != "plan" or not isinstance(detail, dict) or "planDocument" not in detail:
            continue
        name = str(detail["planDocument"])
        stored = store.plan_digest(name) if name.startswith(f"plans/{run.run_id}/") else None
        if stored != detail.get("planDigest"):
            problem = "is missing" if stored is None else "does not match the digest its plan record holds"
            yield Finding(run.run_id, "plan-document", f"plan document {name} {problem}")


def _why_not_chained(run_id: str, seq: int, record: dict[str, Any], prev: str) -> Iterator[Finding]:
    if not _hash_holds(record):
        yield Finding(
            run_id, "edited", f"record {seq} ({record.get('kind')}) was changed after it was written"
        )
    else:
        yield Finding(run_id, "broken-link", f"record {seq} does not chain to record {seq - 1}")


def _hash_holds(record: dict[str, Any]) -> bool:
    """The record's stored hash is its content's under the scheme it names (an unknown scheme
    cannot be recomputed, so it does not hold)."""
    try:
        return canonical_hash(record) == record.get("hash")
    except UnknownScheme:
        return False


def _against_anchors(run: _Run) -> Iterator[Finding]:
    """Each anchor pins the chain at its count: the first one that disagrees dates the rewrite."""
    for count, body in run.anchors:
        if run.chain[count - 1] != body["headHash"]:
            yield Finding(
                run.run_id,
                "edited",
                f"the anchor at record {count} names another head hash: records before it were rewritten",
            )
            return


def _verify_link(
    store: AuditStore, run: _Run, anchors: dict[str, list[tuple[str, dict[str, Any]]]], runs: dict[str, _Run]
) -> Iterator[Finding]:
    """A run's first record chains to the previous run of its key at a count that run anchored."""
    first = run.anchors[0][1]
    prev_run, first_prev = first.get("prevRunId"), first.get("firstPrevHash") or ""
    if not prev_run:
        return
    if prev_run not in anchors:
        yield Finding(run.run_id, "broken-link", f"the previous run {prev_run} of this key has no anchor")
        return
    named = first.get("prevAnchor")
    bodies = dict(anchors[prev_run])
    if named is not None and bodies.get(named, {}).get("headHash") != first_prev:
        yield Finding(
            run.run_id, "broken-link", f"it names anchor {named}, which does not hold its first link"
        )
        return
    if prev_run not in runs:  # not selected: read it to check the link
        extra = store.all_records([prev_run]).get(prev_run, [])
        hashes = {record.get("hash") for _, record in extra}
    else:
        hashes = set(runs[prev_run].chain)
    if first_prev not in hashes:
        yield Finding(
            run.run_id, "broken-link", f"its first record does not chain to any record of run {prev_run}"
        )


def _verify_heads(
    store: AuditStore, anchors: dict[str, list[tuple[str, dict[str, Any]]]]
) -> Iterator[Finding]:
    """Each key's head (what the next run chains to) must be an anchor's head, else a new run
    would chain to a forged history."""
    for head in store.chain_heads():
        run_id, count = str(head.get("RunId")), int(head.get("Count") or 0)
        body = dict(anchors.get(run_id, [])).get(anchor_name(run_id, count), {})
        if body.get("headHash") != head.get("HeadHash") or key_slug(body.get("keyId")) != head.get("RowKey"):
            yield Finding(
                run_id, "head-mismatch", f"the chain head of key {head.get('KeyId')} matches no anchor"
            )
