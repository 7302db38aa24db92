"""Parallel target updates, lane by subscription.

ARM's budgets (and its throttling) are per subscription, so each subscription gets its own lane
of `ROTATION_CONCURRENCY` workers and every subscription starts at once, instead of one pool
walking the steps in id order and so working subscriptions one after another. One process-wide
cap (`MAX_PARALLEL_TARGETS`) keeps the thread count sized for the machine; within a lane the
per-subscription pacer (rotation/azure/pacing.py) spaces calls when ARM says the budget is low.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from itertools import zip_longest

from rotation.concurrency import map_in_context
from rotation.config import MAX_PARALLEL_TARGETS
from rotation.model.results import PlanStep


def subscription_of(step: PlanStep) -> str:
    return step.consumer.resource_id.subscription.lower()


def interleaved(steps: Sequence[PlanStep]) -> list[int]:
    """Step indices, round-robin over subscriptions (each keeping its own order)."""
    by_subscription: dict[str, list[int]] = {}
    for index, step in enumerate(steps):
        by_subscription.setdefault(subscription_of(step), []).append(index)
    rounds = zip_longest(*by_subscription.values())
    return [index for one_round in rounds for index in one_round if index is not None]


class Lanes:
    """At most `per_subscription` steps of one subscription in flight at a time."""

    def __init__(self, per_subscription: int, steps: Sequence[PlanStep]) -> None:
        self.per_subscription = max(1, per_subscription)
        self._gates = {
            subscription_of(step): threading.BoundedSemaphore(self.per_subscription) for step in steps
        }

    def workers(self, busy: Sequence[PlanStep]) -> int:
        """Threads for the steps that do work: a lane per subscription, within the process cap."""
        subscriptions = {subscription_of(step) for step in busy}
        lanes = self.per_subscription * max(1, len(subscriptions))
        return max(1, min(MAX_PARALLEL_TARGETS, lanes, len(busy) or 1))

    def run[R](self, pool: Executor, fn: Callable[[PlanStep], R], steps: Sequence[PlanStep]) -> list[R]:
        """`fn` over `steps` in the pool, subscriptions interleaved; results in the steps' order."""
        order = interleaved(steps)

        def in_lane(index: int) -> R:
            step = steps[index]
            with self._gates[subscription_of(step)]:
                return fn(step)

        results: dict[int, R] = dict(zip(order, map_in_context(pool, in_lane, order), strict=True))
        return [results[index] for index in range(len(steps))]
