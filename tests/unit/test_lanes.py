"""Lanes by subscription: every subscription starts at once, each with its own bound."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from rotation.config import MAX_PARALLEL_TARGETS
from rotation.core.lanes import Lanes, interleaved
from rotation.model.consumer import Consumer
from rotation.model.decisions import Decision
from rotation.model.ids import KeyRef, ResourceId
from rotation.model.results import PlanStep

A = "00000000-0000-0000-0000-00000000000a"
B = "00000000-0000-0000-0000-00000000000b"
KEY = KeyRef("contoso-cmk.vault.azure.net", "k", "a" * 32)


def step(sub: str, name: str) -> PlanStep:
    rid = ResourceId(sub, "rg", "Microsoft.ContainerRegistry", "registries", name)
    consumer = Consumer("registry", rid, KEY, "westeurope")
    return PlanStep.of(consumer, Decision("update", "behind-desired", "behind"), "b" * 32)


def test_steps_are_interleaved_round_robin_by_subscription() -> None:
    steps = [step(A, "a0"), step(A, "a1"), step(A, "a2"), step(B, "b0")]
    assert [steps[i].target.rsplit("/", 1)[1] for i in interleaved(steps)] == ["a0", "b0", "a1", "a2"]


def test_each_subscription_gets_its_own_lane_and_they_run_together() -> None:
    steps = [step(A, f"a{i}") for i in range(4)] + [step(B, f"b{i}") for i in range(4)]
    lanes = Lanes(2, steps)
    assert lanes.workers(steps) == 4
    lock, inflight, peak = threading.Lock(), Counter[str](), Counter[str]()
    # Passes only when four steps are in flight together: two of each subscription, since a
    # lane holds two. Walking one subscription after the other would never fill it.
    together = threading.Barrier(4, timeout=10)

    def work(s: PlanStep) -> str:
        sub = s.consumer.resource_id.subscription
        with lock:
            inflight[sub] += 1
            peak[sub] = max(peak[sub], inflight[sub])
        together.wait()
        with lock:
            inflight[sub] -= 1
        return s.target

    with ThreadPoolExecutor(max_workers=lanes.workers(steps)) as pool:
        assert lanes.run(pool, work, steps) == [s.target for s in steps]  # results in plan order
    assert peak == {A: 2, B: 2}


def test_the_process_cap_bounds_the_threads() -> None:
    subscriptions = [f"00000000-0000-0000-0000-{n:012x}" for n in range(10)]
    steps = [step(sub, f"r{i}") for sub in subscriptions for i in range(20)]
    assert Lanes(16, steps).workers(steps) == MAX_PARALLEL_TARGETS
    assert Lanes(16, steps[:3]).workers(steps[:3]) == 3
