"""`audit verify`: recompute every run's chain and hold it against every anchor the run has.

What this proves and against whom is in docs/architecture.md ("What audit verify proves").
In short: anchors cannot be rewritten or deleted (an immutable container), so each one pins
the chain at the count it names; a rewrite of anchored records contradicts the oldest anchor
after the edit, however many later hashes and anchors the forger recomputes and adds. What
`audit list` filters and orders by (partition, RowKey, the case-folded key and target) is held
against the hashed content, and each key's head against the newest anchor that moved it.
A malformed row or blob is a finding, never a crash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rotation.model.ids import shard_run_id
from rotation.storage.audit.record import UnknownScheme, canonical_hash, key_slug, to_entity
from rotation.storage.audit.store import AuditStore, anchor_count, anchor_name

Rows = list[tuple[str, dict[str, Any]]]  # (RowKey, record)
Anchors = dict[str, list[tuple[str, dict[str, Any]]]]
_META = ("keyId", "partition", "firstPrevHash", "prevRunId")
_OPTIONAL_TEXT = ("keyId", "firstPrevHash", "prevRunId", "prevAnchor", "time")
# Fields a copy of a run keeps (everything but where it is filed and how it is chained).
_MIN_COPY = 3
_IDENTITY = {"runId", "seq", "prevHash", "hash", "partition", "scheme", "stored"}


@dataclass(frozen=True)
class Finding:
    run_id: str
    # edited, missing, lost-tail, broken-link, unanchored, duplicate, bad-anchor, misfiled,
    # unanchored-run, head-mismatch, plan-document, moved-row, index-mismatch, malformed,
    # copied-run, not-anchored, unfinished
    problem: str
    detail: str


@dataclass(frozen=True)
class RunningRun:
    """A run whose record still says `running`, and the lease on its key as the ledger has it."""

    run_id: str
    key_id: str | None
    lease_owner: str | None
    lease_expires: datetime | None


@dataclass
class _Run:
    run_id: str
    anchors: list[tuple[int, dict[str, Any]]]  # (count, body), by count
    rows: Rows
    chain: list[str] = field(default_factory=list)  # hash after each record, as verified


def verify(
    store: AuditStore,
    *,
    run_ids: list[str] | None = None,
    running: Iterable[RunningRun] = (),
    now: datetime | None = None,
) -> tuple[int, list[Finding]]:
    """Check every run (or `run_ids`); returns (runs checked, findings). Any finding is a
    reason to exit 4. `running`: runs still marked running, checked against their lease."""
    anchors = store.all_anchors()
    rows = store.all_records(run_ids)
    wanted = sorted(set(anchors) | set(rows)) if run_ids is None else sorted(set(run_ids))
    findings: list[Finding] = []
    runs: dict[str, _Run] = {}
    for run_id in wanted:
        if run_id not in anchors:
            if rows.get(run_id):
                findings.extend(_unanchored_run(store, run_id, rows[run_id]))
            continue
        run, problems = _anchors_of(run_id, anchors[run_id], rows.get(run_id, []))
        findings.extend(problems)
        if run is None:
            continue
        runs[run_id] = run
        findings.extend(_verify_rows(run))
        findings.extend(_verify_chain(store, run))
        findings.extend(_verify_plans(store, run))
    for run in runs.values():
        findings.extend(_verify_link(store, run, anchors, runs))
        findings.extend(_verify_shards(store, run, runs))
    findings.extend(_verify_copies(runs))
    if run_ids is None:
        findings.extend(_verify_heads(store, anchors))
    findings.extend(unfinished_runs(running, now or datetime.now(UTC), run_ids))
    return len(runs), findings


def _anchor_problem(name: str, run_id: str, body: dict[str, Any]) -> str | None:
    count = anchor_count(name)
    if count is None or body.get("count") != count or isinstance(body.get("count"), bool):
        return f"anchor {name} does not match its name"
    if body.get("runId") != run_id or not isinstance(body.get("headHash"), str) or not body["headHash"]:
        return f"anchor {name} does not name its run and a head hash"
    wrong = [m for m in _OPTIONAL_TEXT if not isinstance(body.get(m), str | None)]
    if wrong or not isinstance(body.get("partition"), str):
        return f"anchor {name} holds values of the wrong type ({', '.join(wrong) or 'partition'})"
    return None


def _anchors_of(
    run_id: str, blobs: list[tuple[str, dict[str, Any]]], rows: Rows
) -> tuple[_Run | None, list[Finding]]:
    """The run's anchors by count, after checking names, counts and shared metadata agree."""
    problems: list[Finding] = []
    anchors: list[tuple[int, dict[str, Any]]] = []
    for name, body in blobs:
        problem = _anchor_problem(name, run_id, body)
        if problem is not None:
            problems.append(Finding(run_id, "bad-anchor", problem))
            continue
        anchors.append((body["count"], body))
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


def _malformed(record: dict[str, Any]) -> str | None:
    """What makes a stored record unreadable as one (the wrong type where a value is expected)."""
    seq = record.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= 999999:
        return "Seq is not a sequence number"
    for name in ("time", "hash", "runId"):
        if not isinstance(record.get(name), str):
            return f"{name[0].upper()}{name[1:]} is not text"
    try:
        datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
    except ValueError:
        return "Time is not an ISO 8601 time"
    return None


def _verify_rows(run: _Run) -> Iterator[Finding]:
    """Where each record is filed and how it is indexed must follow from its hashed content:
    `audit list` orders by RowKey and filters by the case-folded key and target."""
    kept: Rows = []
    for row, record in run.rows:
        problem = _malformed(record)
        if problem is not None:
            yield Finding(run.run_id, "malformed", f"row {row}: {problem}")
            continue
        kept.append((row, record))
        expected = to_entity(str(record.get("partition")), record)
        if expected["RowKey"] != row:
            yield Finding(
                run.run_id,
                "moved-row",
                f"record {record['seq']} is stored under RowKey {row}, not {expected['RowKey']} "
                "(audit list shows it out of place)",
            )
        stored = record.get("stored") or {}
        for column, name in (("KeyNorm", "key"), ("TargetNorm", "target")):
            if stored.get(column) != expected.get(column):
                yield Finding(
                    run.run_id,
                    "index-mismatch",
                    f"record {record['seq']}: {column} is not its {name} case-folded "
                    f"(audit list --{name} would miss or misplace it)",
                )
    run.rows = kept


def _verify_chain(store: AuditStore, run: _Run) -> Iterator[Finding]:
    """Walk the chain from its first link; every anchor must name the hash at its count."""
    by_seq: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for row, record in run.rows:
        by_seq.setdefault(record["seq"], []).append((row, record))
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
    extra = sorted(seq for seq in by_seq if seq >= last_count)
    if extra:
        yield from _past_the_anchors(store, run, [by_seq[seq][0][1] for seq in extra], prev)


def _past_the_anchors(
    store: AuditStore, run: _Run, tail: list[dict[str, Any]], prev: str
) -> Iterator[Finding]:
    """Records after the last anchor: what a storage outage between a run's records (written
    with its head row, in one transaction) and its anchor leaves, or rows someone added."""
    if _outage_left(store, run.run_id, str(run.anchors[0][1].get("partition")), tail, prev):
        yield _not_anchored(run.run_id, len(tail))
    else:
        yield Finding(run.run_id, "unanchored", f"{len(tail)} record(s) after the last anchor")


def _unanchored_run(store: AuditStore, run_id: str, rows: Rows) -> Iterator[Finding]:
    records = sorted((r for _, r in rows if _malformed(r) is None), key=lambda r: r["seq"])
    partitions = {r.get("partition") for r in records}
    if (
        len(records) == len(rows)
        and len(partitions) == 1
        and records[0]["seq"] == 0
        and _outage_left(store, run_id, str(records[0].get("partition")), records, records[0].get("prevHash"))
    ):
        yield _not_anchored(run_id, len(records))
    else:
        yield Finding(run_id, "unanchored-run", f"{len(rows)} record(s) of a run with no anchor")


def _outage_left(
    store: AuditStore, run_id: str, partition: str, tail: list[dict[str, Any]], prev: Any
) -> bool:
    """The tail chains on from `prev`, each hash holds, and the run's head row ends exactly
    there: how the trail's own transaction leaves records whose anchor write then failed."""
    for seq, record in enumerate(tail, start=tail[0]["seq"]):
        if record["seq"] != seq or record.get("prevHash") != prev or not _hash_holds(record):
            return False
        prev = record["hash"]
    head = store.run_head(partition, run_id)
    return head is not None and (head.count, head.head) == (tail[-1]["seq"] + 1, prev)


def _not_anchored(run_id: str, count: int) -> Finding:
    return Finding(
        run_id,
        "not-anchored",
        f"{count} record(s) were written but never anchored: what a storage outage between the "
        "records and their anchor leaves (the trail logs 'audit anchor write failed'); they chain "
        "correctly but nothing immutable vouches for them",
    )


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


def _verify_link(store: AuditStore, run: _Run, anchors: Anchors, runs: dict[str, _Run]) -> Iterator[Finding]:
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


def _verify_shards(store: AuditStore, run: _Run, runs: dict[str, _Run]) -> Iterator[Finding]:
    """A sharded run (its `run-sharded` record) is closed by a `run-finished` after it, once
    every shard ended; until then, each shard that has no trail, or whose trail has not ended
    as the parent counts an ending, is named. A shard names its parent in its first record:
    that parent must have sharded."""
    rows = [record for _, record in sorted(run.rows, key=lambda item: item[1].get("seq", 0))]
    first = rows[0] if rows else {}
    parent = (first.get("detail") or {}).get("parentRunId") if first.get("kind") == "run-started" else None
    if isinstance(parent, str) and parent not in runs and not store.latest_anchor(parent):
        yield Finding(run.run_id, "orphan-shard", f"it names parent run {parent}, which has no trail")
    sharded = next((r for r in reversed(rows) if r.get("kind") == "run-sharded"), None)
    if sharded is None or any(r.get("kind") == "run-finished" and r["seq"] > sharded["seq"] for r in rows):
        return
    detail = sharded.get("detail") or {}
    count, fence = detail.get("shards"), detail.get("fence")
    if not isinstance(count, int) or not isinstance(fence, int):
        yield Finding(run.run_id, "malformed", "its run-sharded record does not say how many shards")
        return
    ids = [shard_run_id(run.run_id, fence, i) for i in range(1, count + 1)]
    missing = [i for i in ids if i not in runs]
    found: Anchors = {i: runs[i].rows for i in ids if i in runs} | store.all_records(missing)
    open_shards = []
    for index, shard_id in enumerate(ids, start=1):
        trail = sorted((r for _, r in found.get(shard_id, [])), key=lambda r: r.get("seq", 0))
        kinds = [(r.get("kind"), r.get("outcome")) for r in trail]
        ended = kinds and (
            kinds[-1][0] == "shard-fenced" or (kinds[-1][0] == "run-finished" and kinds[-1][1] != "failed")
        )
        if not ended:
            state = "no trail" if not kinds else f"last record {kinds[-1][0]} ({kinds[-1][1]})"
            open_shards.append(f"shard {index} ({shard_id}): {state}")
    yield Finding(
        run.run_id,
        "unfinished-shards",
        f"the run was sharded into {count} shard(s) and is not closed; "
        + "; ".join(open_shards[:20] or ["all shards ended, the close is missing (the sweep closes it)"]),
    )


def _fingerprint(run: _Run) -> str | None:
    """The run's records without what names, files and chains them: two runs never share one
    (record times are milliseconds), unless one was copied from the other."""
    if len(run.rows) < _MIN_COPY or not run.anchors[0][1].get("keyId"):
        return None  # keyless one-record trails (rejected input) can coincide honestly
    content = [
        {k: v for k, v in record.items() if k not in _IDENTITY}
        for _, record in sorted(run.rows, key=lambda item: item[1]["seq"])
    ]
    encoded = json.dumps(content, sort_keys=True, default=str).replace(run.run_id, "<run>")
    return hashlib.sha256(encoded.encode()).hexdigest()


def _verify_copies(runs: dict[str, _Run]) -> Iterator[Finding]:
    seen: dict[str, str] = {}
    for run_id in sorted(runs):
        fingerprint = _fingerprint(runs[run_id])
        if fingerprint is None:
            continue
        if fingerprint in seen:
            for one, other in ((run_id, seen[fingerprint]), (seen[fingerprint], run_id)):
                yield Finding(
                    one, "copied-run", f"its records repeat run {other}'s, record for record: one is a copy"
                )
        else:
            seen[fingerprint] = run_id


def _newest_moves(anchors: Anchors) -> dict[str, tuple[str, int, str]]:
    """Per key slug, the newest anchor written by a trail that moves the key's head:
    (time, count, run id). Anchors are create-only, so this cannot be rolled back."""
    newest: dict[str, tuple[str, int, str]] = {}
    for run_id, blobs in anchors.items():
        for name, body in blobs:
            if body.get("advancesHead") is not True or _anchor_problem(name, run_id, body):
                continue
            if not isinstance(body.get("keyId"), str):
                continue
            slug, moment = key_slug(body["keyId"]), (str(body.get("time") or ""), body["count"], run_id)
            if slug not in newest or moment[:2] > newest[slug][:2]:
                newest[slug] = moment
    return newest


def _verify_heads(store: AuditStore, anchors: Anchors) -> Iterator[Finding]:
    """Each key's head (what the next run chains to) must be an anchor's head, and the newest
    anchor that moved it, else a new run would chain to a forged or rolled-back history."""
    newest = _newest_moves(anchors)
    seen: set[str] = set()
    for head in store.chain_heads():
        slug, key_id = str(head.get("RowKey")), head.get("KeyId")
        seen.add(slug)
        run_id, count, head_hash = head.get("RunId"), head.get("Count"), head.get("HeadHash")
        if not isinstance(run_id, str) or not isinstance(count, int) or isinstance(count, bool):
            yield Finding(str(run_id), "head-mismatch", f"the chain head row of key {key_id} is malformed")
            continue
        body = dict(anchors.get(run_id, [])).get(anchor_name(run_id, count), {})
        if body.get("headHash") != head_hash or key_slug(body.get("keyId")) != slug:
            yield Finding(run_id, "head-mismatch", f"the chain head of key {key_id} matches no anchor")
            continue
        latest = newest.get(slug)
        if latest is not None and latest[1:] != (count, run_id):
            yield Finding(
                run_id,
                "head-mismatch",
                f"the chain head of key {key_id} names run {run_id} at record {count}, but the newest "
                f"anchor that moved it is run {latest[2]} at record {latest[1]}: the head was rolled back",
            )
    for slug in sorted(set(newest) - seen):
        _, count, run_id = newest[slug]
        yield Finding(
            run_id, "head-mismatch", f"a key's head row is missing; run {run_id} moved it to {count}"
        )


def unfinished_runs(
    running: Iterable[RunningRun], now: datetime, run_ids: list[str] | None
) -> Iterator[Finding]:
    """A run still `running` whose lease ended (or is another's) was stopped without closing:
    killed, or its host went away. Its trail ends where it was stopped."""
    for run in running:
        if run_ids is not None and run.run_id not in run_ids:
            continue
        mine = bool(run.lease_owner and run.lease_owner.startswith(f"{run.run_id}/"))
        if mine and run.lease_expires is not None and run.lease_expires > now:
            continue  # still under way
        why = "its lease expired" if mine else "it holds no lease on its key"
        yield Finding(
            run.run_id,
            "unfinished",
            f"the run is still marked running but {why}: it was stopped without closing "
            f"(key {run.key_id}); writes after its last record are unaccounted for",
        )
