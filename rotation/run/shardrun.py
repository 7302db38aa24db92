"""The two ends of a sharded run (run/sharding.py says what sharding is): the parent hands its
`update` targets to shard requests (`hand_out`), and a shard that ended reports to the parent,
the last one closing it (`report`); a shard delivered again after it ended, or the sweep, closes
a parent whose closer died (`settle`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rotation.model.ids import parse_key_id, shard_run_id
from rotation.model.request import RotationRequest, Shard
from rotation.model.results import INTERRUPTED_EXIT, Plan, RunResult, count
from rotation.run.sharding import add_up, by_subscription, closing_status, split
from rotation.storage.audit import AuditStore, AuditTrail
from rotation.storage.fence import parent_owns, release_parent
from rotation.storage.ledger import CONVERGED, Lease, Ledger, generation_of
from rotation.storage.queue import enqueue, shard_fields
from rotation.storage.shardbook import PENDING, ShardBook, ShardEntry

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

log = logging.getLogger("rotation.shards")
_EXIT = {"failed": 4, "needs-attention": 3, "interrupted": INTERRUPTED_EXIT}


@dataclass(frozen=True)
class ShardStores:
    audit: AuditStore
    book: ShardBook
    ledger: Ledger
    queue: QueueClient


def hand_out(
    stores: ShardStores, request: RotationRequest, plan: Plan, trail: AuditTrail, lease: Lease, size: int
) -> int:
    """Queue one shard request per chunk of a subscription's `update` targets, after the book and
    the parent's `run-sharded` record are durable; the shards keep the lease from here on.
    Returns how many shards were queued."""
    parent, fence = request.request_id, lease.generation
    shards = split(plan.steps, size)
    entries = [
        ShardEntry(i, shard_run_id(parent, fence, i), s.subscription, len(s.targets))
        for i, s in enumerate(shards, start=1)
    ]
    stores.book.open(parent, entries, fence)
    trail.record(
        "run-sharded",
        outcome="sharded",
        toVersion=plan.desired_version,
        message=f"{sum(e.targets for e in entries)} target(s) handed to {len(entries)} shard(s) on the queue",
        detail={"shards": len(entries), "fence": fence, "bySubscription": by_subscription(shards)},
    )
    trail.flush()  # the shards' chains start from this run's head
    lease.renew()  # fresh for the first shard to find
    lease.hand_off()  # before any shard renews it: two renewers of one ETag would see a loss
    for entry, shard in zip(entries, shards, strict=True):
        enqueue(
            stores.queue,
            RotationRequest(
                key_id=request.key_id,
                source=request.source,
                actor=request.actor,
                request_id=entry.run_id,
                targets=shard.targets,
                shard=Shard(parent, entry.index, len(entries), fence),
            ),
        )
    return len(entries)


def shard_ended(stores: ShardStores, request: RotationRequest, result: RunResult, attempt: int) -> None:
    """A shard's run ended: an ending counts for the parent (the last one closes it); a failed
    attempt that the queue will retry, or an interrupted one that comes back, is noted only."""
    assert request.shard is not None
    summary = count(s.outcome for s in result.steps)
    retried = result.status == "failed" and not (result.error is not None and result.error.final)
    if retried or result.status in ("interrupted", "soaking"):
        note = f"{result.status} (attempt {attempt})"
        stores.book.note(request.shard.parent_run_id, request.shard.index, note, summary)
        return
    report(stores, request, result.status, summary)


def report(
    stores: ShardStores, request: RotationRequest, status: str, summary: dict[str, int] | None
) -> bool:
    """The shard ended as `status` (succeeded, needs-attention, blocked, failed, fenced): its
    mark on the parent; once every shard has ended, the close (`settle`). True when this report
    closed the parent."""
    shard = request.shard
    assert shard is not None
    amend = request.source == "replay"  # a replayed shard's outcome replaces the one it had
    marked = stores.book.mark(
        shard.parent_run_id, shard.index, status, shard.fence, amend=amend, summary=summary
    )
    return PENDING not in marked.marks and settle(stores, shard.parent_run_id, request.request_id)


def ended_already(stores: ShardStores, request: RotationRequest) -> bool:
    """A delivery of a shard that has ended (its message redelivered after the instance died
    past its mark): nothing is run again; the parent is closed if that is all that is left."""
    shard = request.shard
    assert shard is not None
    mark = stores.book.mark_of(shard.parent_run_id, shard.index, shard.fence)
    if mark is None or mark == PENDING:
        return False
    log.info("shard %d of run %s ended already (%s)", shard.index, shard.parent_run_id, mark)
    settle(stores, shard.parent_run_id, request.request_id)
    return True


def settle(stores: ShardStores, parent: str, closer: str) -> bool:
    """Close the parent when every shard has ended and that close is not done (or claimed by a
    live closer): exactly once per outcome, whoever gets here first (storage/shardbook.py).
    True when `closer` closed it."""
    marks = stores.book.claim_close(parent, closer, datetime.now(UTC))
    if marks is None:
        return False
    close(stores, parent, marks, closer)
    return True


def stop_fenced(stores: ShardStores, request: RotationRequest) -> None:
    """The parent's lease moved on (another run took the key since): the shard writes nothing
    to any consumer, says so in its trail, and ends as `fenced` (the run that holds the key now
    converges its targets)."""
    shard = request.shard
    assert shard is not None
    row = stores.ledger.lease_row(request.key)
    trail = AuditTrail.for_request(stores.audit, request)
    trail.record(
        "shard-fenced",
        outcome="stopped",
        reason="stale-fence",
        message=f"shard {shard.index} of run {shard.parent_run_id}: the key's lease is no longer "
        f"generation {shard.fence}; nothing written",
        detail={**shard_fields(shard), "leaseGeneration": generation_of(row) if row else None},
    )
    trail.flush()
    log.warning("shard %d of run %s stopped: stale fence %d", shard.index, shard.parent_run_id, shard.fence)
    report(stores, request, "fenced", None)


def close(stores: ShardStores, parent: str, marks: str, closer: str) -> None:
    """The parent's `run-finished` with everything its shards did (unless a closer that died
    wrote it already), its event, its lease, then its run record: the close is done."""
    row = stores.book.parent(parent) or {}
    key = parse_key_id(row.get("KeyId"), allow_version=False)
    fence = int(row.get("ShardFence") or 0)
    # the steps the parent kept: its Summary until a close replaces that with the totals
    own = _json(row.get("OwnSummary") if "OwnSummary" in row else row.get("Summary")) or {}
    rows = stores.book.shards(parent)
    totals = add_up([own, *(r.get("summary") or {} for r in rows)])
    status = closing_status([str(row.get("OwnStatus") or "succeeded"), *(str(r.get("status")) for r in rows)])
    lease = stores.ledger.lease_row(key)
    ours = lease is not None and parent_owns(lease, parent, fence)
    actor = str(row.get("Actor") or "system")
    trail = AuditTrail(stores.audit, run_id=parent, key=key, actor=actor, advance_key_head=ours)
    if not _finished(stores.audit, parent, trail.partition, marks):
        trail.record(
            "run-finished",
            outcome=status,
            toVersion=row.get("DesiredVersion"),
            detail={
                "summary": totals,
                "exitCode": _EXIT.get(status, 0),
                "shards": len(marks),
                "marks": marks,
                "closedBy": closer,
            },
        )
        trail.flush()
    if row.get("EventId") and status in CONVERGED:  # a redelivered event is skipped, as for any run
        stores.ledger.record_event(
            str(row["EventId"]), outcome=status, run_id=parent, key_id=key.versionless_id, version=None
        )
    if ours:
        release_parent(stores.ledger, key, parent, fence)
    stores.book.closed(parent, status, totals, own, _EXIT.get(status, 0), closer, marks)
    log.info("run %s closed by %s: %s %s", parent, closer, status, totals)


def _finished(audit: AuditStore, parent: str, partition: str, marks: str) -> bool:
    """Whether the parent's trail closes these marks already, after its last `run-sharded` (a
    closer died between that record and the run record)."""
    found = audit.run_records(parent, partition, kinds=("run-sharded", "run-finished"))
    sharded = max((r["seq"] for r in found if r.get("kind") == "run-sharded"), default=-1)
    return any(
        r.get("kind") == "run-finished"
        and r["seq"] > sharded
        and (r.get("detail") or {}).get("marks") == marks
        for r in found
    )


def _json(value: Any) -> dict[str, int] | None:
    return json.loads(value) if isinstance(value, str) and value.startswith("{") else None
