"""Lanes by subscription: every subscription starts at once, each as wide as ARM's budget for it."""

from __future__ import annotations

import contextvars
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from rotation.azure import pacing
from rotation.config import MAX_PARALLEL_TARGETS
from rotation.model.consumer import Consumer
from rotation.model.decisions import Decision
from rotation.model.ids import KeyRef, ResourceId
from rotation.model.results import PlanStep
from rotation.run.lanes import Lanes

A = "00000000-0000-0000-0000-00000000000a"
B = "00000000-0000-0000-0000-00000000000b"
T = TypeVar("T")
KEY = KeyRef("contoso-cmk.vault.azure.net", "k", "a" * 32)


def step(sub: str, name: str) -> PlanStep:
    rid = ResourceId(sub, "rg", "Microsoft.ContainerRegistry", "registries", name)
    consumer = Consumer("registry", rid, KEY, "westeurope")
    return PlanStep.of(consumer, Decision("update", "behind-desired", "behind"), "b" * 32)


def peak_in_flight(lanes: Lanes, steps: list[PlanStep], together: int) -> Counter[str]:
    lock, inflight, peak = threading.Lock(), Counter[str](), Counter[str]()
    barrier = threading.Barrier(together, timeout=10)

    def work(s: PlanStep) -> None:
        sub = s.consumer.resource_id.subscription
        with lock:
            inflight[sub] += 1
            peak[sub] = max(peak[sub], inflight[sub])
        barrier.wait()
        with lock:
            inflight[sub] -= 1

    with ThreadPoolExecutor(max_workers=lanes.workers(steps)) as pool:
        lanes.run(pool, work, steps)
    return peak


def test_each_subscription_gets_its_own_lane_and_they_run_together() -> None:
    steps = [step(A, f"a{i}") for i in range(4)] + [step(B, f"b{i}") for i in range(4)]
    lanes = Lanes(2)  # ARM has not reported a budget: each lane keeps its starting width
    # Passes only when four steps are in flight together: two of each subscription, since a
    # lane holds two. Walking one subscription after the other would never fill it.
    assert peak_in_flight(lanes, steps, together=4) == {A: 2, B: 2}
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert lanes.run(pool, lambda s: s.target, steps) == [s.target for s in steps]  # plan order


def test_a_lane_is_as_wide_as_the_budget_arm_reported_never_narrower_than_it_started() -> None:
    reported: dict[str, int | None] = {A: 6, B: 0}
    lanes = Lanes(2, headroom=lambda sub: reported[sub])
    assert (lanes.width(A), lanes.width(B)) == (6, 2)
    steps = [step(A, f"a{i}") for i in range(6)] + [step(B, f"b{i}") for i in range(2)]
    assert peak_in_flight(lanes, steps, together=8) == {A: 6, B: 2}  # all eight at once
    assert Lanes(2, headroom=lambda sub: 500, cap=40).width(A) == 40  # within the process cap


def test_a_target_past_its_write_leaves_its_lanes_room_to_the_next() -> None:
    """ARM's write budget is what a lane's width measures: a target whose write ARM answered
    (waiting for its operation, reading itself back) spends no more of it, so the lane starts
    its next target then instead of when the first one ends."""
    second_started = threading.Event()

    def work(s: PlanStep) -> str:
        name = s.target.rsplit("/", 1)[1]
        if name == "a0":
            told = pacing.write_answered.get()
            assert told is not None
            told()
            told()  # a second answer (a retried write) frees nothing more
            assert second_started.wait(10), "the lane waited for a0 to end"
        else:
            second_started.set()
        return name

    steps = [step(A, "a0"), step(A, "a1"), step(A, "a2")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert Lanes(1, cap=2).run(pool, work, steps) == ["a0", "a1", "a2"]


def test_targets_still_to_write_are_capped_apart_from_those_in_flight() -> None:
    """On the hub many targets wait out their long-running writes, while those still to write
    stay within `writing_cap` (what the connections carry at once)."""
    lock, writing, peak = threading.Lock(), [0], [0]
    all_in = threading.Barrier(3, timeout=10)

    def work(s: PlanStep) -> str:
        with lock:
            writing[0] += 1
            peak[0] = max(peak[0], writing[0])
        told = pacing.write_answered.get()
        assert told is not None
        with lock:
            writing[0] -= 1
        told()  # past its write: the next may start while this one waits for its operation
        all_in.wait()  # three in flight at once: the process cap, not the writing cap, binds
        return s.target.rsplit("/", 1)[1]

    steps = [step(A, f"a{i}") for i in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert Lanes(3, cap=3, writing_cap=1).run(pool, work, steps) == ["a0", "a1", "a2"]
    assert peak[0] == 1


def test_a_full_lane_never_ties_up_a_thread_another_subscription_could_use() -> None:
    # Two threads; A's lane holds one step. A's first step finishes only once B's two have: if
    # A's second step sat on the other thread waiting for its lane, B could never run.
    b_done = threading.Event()
    finished: list[str] = []

    def work(s: PlanStep) -> str:
        name = s.target.rsplit("/", 1)[1]
        if name == "a0":
            assert b_done.wait(10), "B's steps never ran while A's lane was full"
        finished.append(name)
        if {"b0", "b1"} <= set(finished):
            b_done.set()
        return name

    steps = [step(A, "a0"), step(A, "a1"), step(B, "b0"), step(B, "b1")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert Lanes(1, cap=2).run(pool, work, steps) == ["a0", "a1", "b0", "b1"]
    assert finished.index("a1") > finished.index("a0")


def test_the_first_failure_is_raised_and_no_step_starts_after_it() -> None:
    started: list[str] = []

    def work(s: PlanStep) -> str:
        name = s.target.rsplit("/", 1)[1]
        started.append(name)
        if name == "a1":
            raise RuntimeError("boom")
        return name

    steps = [step(A, f"a{i}") for i in range(5)]
    with ThreadPoolExecutor(max_workers=1) as pool, pytest.raises(RuntimeError, match="boom"):
        Lanes(1, cap=1).run(pool, work, steps)
    assert started == ["a0", "a1"]


def test_the_process_cap_bounds_the_threads() -> None:
    subscriptions = [f"00000000-0000-0000-0000-{n:012x}" for n in range(10)]
    steps = [step(sub, f"r{i}") for sub in subscriptions for i in range(30)]
    assert Lanes(16).workers(steps) == MAX_PARALLEL_TARGETS
    assert Lanes(16).workers(steps[:3]) == 3


def test_a_finished_step_starts_the_next_in_its_own_thread_with_the_callers_context() -> None:
    """The hand-over: a lane's next step is started by the worker whose step just finished, not
    by waking the caller's thread for every target; every step still sees the caller's context."""
    caller = threading.get_ident()
    asked_from: list[int] = []
    seen = contextvars.ContextVar("seen", default="bare")
    seen.set("caller's")

    def headroom(subscription: str) -> None:  # ARM reported no budget; who asked is what counts
        asked_from.append(threading.get_ident())

    lanes = Lanes(1, headroom=headroom)
    steps = [step(A, f"a{i}") for i in range(20)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert lanes.run(pool, lambda s: seen.get(), steps) == ["caller's"] * 20
    assert asked_from.count(caller) < 10  # the first fill (and a recheck a quarter second), not per step
    assert len(asked_from) >= 20


class RefusesFromWorkers(ThreadPoolExecutor):
    """A pool that refuses new work from its own threads (as a pool shut down under a run does)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.caller = threading.get_ident()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if threading.get_ident() != self.caller:
            raise RuntimeError("cannot schedule new futures after shutdown")
        return super().submit(fn, *args, **kwargs)


def test_a_start_refused_in_a_finishing_thread_is_raised_not_lost() -> None:
    # A done-callback's exception is only logged by concurrent.futures: without the guard the
    # steps after the refused start would be missing from the results, silently.
    steps = [step(A, f"a{i}") for i in range(4)]
    with RefusesFromWorkers() as pool, pytest.raises(RuntimeError, match="after shutdown"):
        Lanes(1, cap=1).run(pool, lambda s: s.target, steps)
