"""A key's run split over Functions instances (docs/scaling.md, "How the work spreads").

A run with more `update` steps than `ROTATION_SHARD_THRESHOLD` plans once, as any run (one plan
document), then hands its `update` targets to shard requests on `rotation-requests`, grouped by
subscription (so one subscription's ARM budget is spent by one instance at a time), which any
instance takes. The parent keeps the key's lease: the shards carry its generation (`fence`),
renew it while they run, and stop without writing when it moved on (storage/fence.py). Each
shard is a run of its own (its own audit chain, whose first record names the parent); the
shard that ends last, found by the ETag-guarded marks (storage/shardbook.py), closes the parent:
its `run-finished` with the totals, its run record, the key's lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rotation.model.decisions import UPDATE
from rotation.model.ids import parse_resource_id
from rotation.model.results import PlanStep, count

MAX_SHARD_TARGETS = 200  # one message, at most: 200 ARM ids fit in 64 KiB of base64 with room
_MAX_ID_CHARS = 40_000  # the ids' share of a message (base64 adds a third, the rest is small)


@dataclass(frozen=True)
class ShardPlan:
    subscription: str
    targets: tuple[str, ...]


def wants_shards(steps: Sequence[PlanStep], threshold: int) -> bool:
    return sum(1 for s in steps if s.action == UPDATE) > threshold


def split(steps: Sequence[PlanStep], size: int = MAX_SHARD_TARGETS) -> list[ShardPlan]:
    """The `update` targets by subscription, each subscription in chunks of at most `size`
    targets (and of ids that fit one queue message), subscriptions in order."""
    by_subscription: dict[str, list[str]] = {}
    for step in steps:
        if step.action == UPDATE:
            subscription = parse_resource_id(step.target, None).subscription.lower()
            by_subscription.setdefault(subscription, []).append(step.target)
    shards: list[ShardPlan] = []
    for subscription in sorted(by_subscription):
        chunk: list[str] = []
        chars = 0
        for target in by_subscription[subscription]:
            if chunk and (len(chunk) >= size or chars + len(target) + 3 > _MAX_ID_CHARS):
                shards.append(ShardPlan(subscription, tuple(chunk)))
                chunk, chars = [], 0
            chunk.append(target)
            chars += len(target) + 3
        shards.append(ShardPlan(subscription, tuple(chunk)))
    return shards


def closing_status(statuses: Sequence[str]) -> str:
    """The parent's status from its own (the steps it did not hand out) and its shards': a
    failed shard fails the run; a fenced one (another run took the key) interrupts it."""
    if "failed" in statuses:
        return "failed"
    if "fenced" in statuses:
        return "interrupted"
    if "needs-attention" in statuses or "blocked" in statuses:
        return "needs-attention"
    return "succeeded"


def add_up(summaries: Sequence[dict[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for summary in summaries:
        for outcome, n in summary.items():
            totals[outcome] = totals.get(outcome, 0) + int(n)
    return totals


def by_subscription(shards: Sequence[ShardPlan]) -> dict[str, int]:
    return count(s.subscription for s in shards)
