"""Asking a run to stop (run/stopping.py) and the lanes' answer to it (run/lanes.py): the steps
waiting end at once, the steps under way get the grace, and those still under way after it are
cut, without the caller waiting for their threads."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

from rotation.model.results import PlanStep
from rotation.run.lanes import Lanes
from rotation.run.stopping import Stop, signals_ask
from tests.unit.test_lanes import A, B, step


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_first_ask_names_the_reason_and_starts_the_grace_a_second_ends_it() -> None:
    clock = Clock()
    stop = Stop(grace_seconds=10, clock=clock)
    assert not stop.asked and stop.grace_left() == 10
    stop.ask("SIGTERM")
    clock.now = 4
    assert stop.asked and stop.reason == "SIGTERM" and stop.grace_left() == 6
    stop.ask("SIGINT")
    assert stop.reason == "SIGTERM" and stop.grace_left() == 0


def test_after_a_stop_waiting_steps_end_at_once_and_steps_past_the_grace_are_cut() -> None:
    steps = [step(A, f"a{i}") for i in range(6)] + [step(B, "b0")]
    stop = Stop(grace_seconds=0.3)
    release = threading.Event()  # the slow step's write never ends while the test waits
    started = threading.Barrier(3, timeout=10)

    def work(s: PlanStep) -> str:
        if stop.asked:
            return "not started"
        name = s.target.rsplit("/", 1)[1]
        if name in ("a0", "a1", "b0"):
            started.wait()
            if name == "a0":
                stop.ask("SIGINT")
                return "done"
            release.wait(timeout=30)
        return "done"

    pool = ThreadPoolExecutor(max_workers=4)
    try:
        outcome = Lanes(2).run(pool, work, steps, stop, cut=lambda s: "cut")
    finally:
        release.set()
        pool.shutdown(wait=True)
    assert outcome == ["done", "cut", "not started", "not started", "not started", "not started", "cut"]


def test_without_a_stop_the_lanes_wait_for_every_step_as_before() -> None:
    stop = Stop(grace_seconds=0)
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert Lanes(1).run(
            pool, lambda s: s.target, [step(A, "a"), step(B, "b")], stop, cut=lambda s: "cut"
        ) == [
            step(A, "a").target,
            step(B, "b").target,
        ]


def test_signals_ask_instead_of_ending_and_a_third_raises() -> None:
    stop, told = Stop(), []
    before = signal.getsignal(signal.SIGTERM)
    with signals_ask(stop, lambda name, first: told.append((name, first))):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.asked and stop.reason == "SIGTERM" and stop.grace_left() == 0
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            raised = True
        else:
            raised = False
    assert raised and told == [("SIGTERM", True), ("SIGINT", False)]
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are given back
