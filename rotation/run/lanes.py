"""Parallel target updates, a lane per subscription, each as wide as ARM's budget for it.

ARM's budgets (and its throttling) are per subscription, so each subscription gets its own lane
and every subscription starts at once, instead of one pool walking the steps in id order and so
working subscriptions one after another. A lane starts `ROTATION_CONCURRENCY` targets; once ARM
has reported what is left of the subscription's budget (the pacer's `headroom`, from
`x-ms-ratelimit-remaining-subscription-*` and 429s) the lane is as wide as that budget, never
narrower than it started, so a subscription with a full bucket takes its whole plan at once and
one that is running dry keeps a steady few in flight while the pacer spaces their calls. What
counts against that width are the lane's targets still to write: one whose write ARM answered
(the pacer says so, rotation/azure/pacing.py `write_answered`) spends no more of the budget while
it waits for its operation and reads itself back, so it no longer holds the lane's room (it
still holds a thread, within the cap). A retried write is not counted again: the pacer still
spaces it.

Steps wait in their lane's own queue and a step is handed to the pool only when its lane has
room: a lane that is full never ties up a thread another subscription could use. One
process-wide cap bounds the targets in flight (`config.parallel_targets`: the threads, or on the
hub the greenlets), and at most `MAX_PARALLEL_TARGETS` of them are still to write: on the hub,
1,024 may wait out their long-running writes while a burst of writes stays within what the
connections carry at once. A step that finishes starts what
now fits itself, in its worker thread: the caller's thread is woken only to fill room that
opens otherwise (ARM's budget growing), after a failure or a stop, and when no step waits any
more, not once per target.

Once the run is asked to stop (run/stopping.py), the steps still waiting are run at once in
the caller's thread (the step function starts no write after a stop, so they end at once), the
steps under way get the stop's grace period to finish, and each one still under way after it is
answered by `cut` instead of its result (its thread goes on; the pool is not waited for).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future

from rotation.azure import pacing
from rotation.concurrency import in_context
from rotation.config import MAX_PARALLEL_TARGETS
from rotation.model.results import PlanStep
from rotation.run.stopping import Stop

# The lanes look again at ARM's budget this often while every lane is full (a completion wakes
# them sooner): ARM can report a refilled bucket without any of this run's targets finishing.
RECHECK_SECONDS = 0.25


def subscription_of(step: PlanStep) -> str:
    return step.consumer.resource_id.subscription.lower()


class Lanes:
    """`run` maps a function over steps, each subscription's steps at most `width()` at a time."""

    def __init__(
        self,
        start: int,
        headroom: Callable[[str], int | None] | None = None,
        cap: int = MAX_PARALLEL_TARGETS,
        writing_cap: int = MAX_PARALLEL_TARGETS,
    ) -> None:
        self.start = max(1, start)
        self.cap = max(1, cap)
        self.writing_cap = max(1, min(cap, writing_cap))
        self._headroom = headroom

    def width(self, subscription: str) -> int:
        """How many of this subscription's targets may be in flight now."""
        reported = self._headroom(subscription) if self._headroom else None
        return min(self.cap, max(self.start, reported or 0))

    def workers(self, busy: Sequence[PlanStep]) -> int:
        """Threads for the steps that do work, within the process cap."""
        return max(1, min(self.cap, len(busy)))

    def run[R](
        self,
        pool: Executor,
        fn: Callable[[PlanStep], R],
        steps: Sequence[PlanStep],
        stop: Stop | None = None,
        cut: Callable[[PlanStep], R] | None = None,
    ) -> list[R]:
        """`fn` over `steps` in the pool; results in the steps' order. The first exception is
        raised once the steps already started have finished (no new one starts after it).
        `stop` and `cut`: see the module's docstring."""
        return _Dispatch(self, pool, fn, steps, stop, cut).run()


class _Dispatch[R]:
    """One `Lanes.run`: hands steps to the pool, round-robin over the lanes that have room."""

    def __init__(
        self,
        lanes: Lanes,
        pool: Executor,
        fn: Callable[[PlanStep], R],
        steps: Sequence[PlanStep],
        stop: Stop | None,
        cut: Callable[[PlanStep], R] | None,
    ) -> None:
        self.lanes, self.pool, self.fn, self.steps = lanes, pool, fn, steps
        # The caller's context for every step, whichever thread starts it (a worker's own is bare).
        self.run_step = in_context(self._step)
        self.starting = False  # in _start_what_fits: a step done at once is not started from there
        self.stop, self.cut = stop, cut
        self.waiting: dict[str, deque[int]] = {}
        for index, step in enumerate(steps):
            self.waiting.setdefault(subscription_of(step), deque()).append(index)
        self.in_flight: dict[str, int] = dict.fromkeys(self.waiting, 0)
        self.to_write: dict[str, int] = dict.fromkeys(self.waiting, 0)  # in flight, no write answered
        self.past_write: set[int] = set()  # steps in flight whose write ARM answered
        self.futures: dict[int, Future[R]] = {}
        self.changed = threading.Condition()
        self.failed = False
        self.refused: Exception | None = None  # a start a finishing thread could not make

    def run(self) -> list[R]:
        with self.changed:
            while self.waiting and not self.failed:
                if self._stopping():
                    self._run_waiting_here()
                elif not self._start_what_fits():
                    self.changed.wait(RECHECK_SECONDS)
        self._wait_for_started()
        if self.refused is not None:
            raise self.refused
        results: list[R] = []
        for index in range(len(self.steps)):
            future = self.futures.get(index)
            if future is None:  # not started: an earlier step raised
                continue
            if not future.done() and self.cut is not None:  # still under way past the grace
                results.append(self.cut(self.steps[index]))
                continue
            results.append(future.result())  # raises the first failure, in step order
        return results

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.asked

    def _run_waiting_here(self) -> None:
        """After a stop: the waiting steps end at once (`fn` starts no write), in this thread,
        without waiting for a lane to have room."""
        for queue in self.waiting.values():
            for index in queue:
                future: Future[R] = Future()
                try:
                    future.set_result(self.fn(self.steps[index]))
                except Exception as exc:  # noqa: BLE001 - kept for the step-order raise in run()
                    future.set_exception(exc)
                self.futures[index] = future
        self.waiting.clear()

    def _wait_for_started(self) -> None:
        """Until every started step finished, or (after a stop, with `cut`) the grace ended.
        Woken by each step's end (`_finished`), not by waiting on every future still pending
        after each end: with 1,024 in flight that was a thousand locks taken per step."""
        with self.changed:
            while any(self.in_flight.values()):
                timeout = None
                if self.stop is not None and self.cut is not None:
                    if self.stop.asked and self.stop.grace_left() <= 0:
                        return
                    timeout = min(RECHECK_SECONDS, self.stop.grace_left())
                self.changed.wait(timeout)

    def _start_what_fits(self) -> bool:
        """One step per lane with room, lane after lane, until none has room; True if any started."""
        started = False
        progress = True
        self.starting = True
        try:
            while progress and self.waiting:
                progress = False
                for subscription in list(self.waiting):
                    busy = sum(self.in_flight.values())
                    writing = sum(self.to_write.values())
                    if (
                        busy >= self.lanes.cap
                        or writing >= self.lanes.writing_cap
                        or self.to_write[subscription] >= self.lanes.width(subscription)
                    ):
                        continue
                    queue = self.waiting[subscription]
                    self._start(subscription, queue[0])
                    queue.popleft()  # once started: a refused start leaves the step waiting
                    if not queue:
                        del self.waiting[subscription]
                    progress = started = True
        finally:
            self.starting = False
        return started

    def _step(self, index: int) -> R:
        """Step `index`, in its own context copy: its writes' answers are told to this lane."""
        subscription = subscription_of(self.steps[index])
        pacing.write_answered.set(lambda: self._wrote(subscription, index))
        return self.fn(self.steps[index])

    def _start(self, subscription: str, index: int) -> None:
        future = self.pool.submit(self.run_step, index)
        self.in_flight[subscription] += 1
        self.to_write[subscription] += 1
        self.futures[index] = future
        future.add_done_callback(lambda done: self._finished(subscription, index, done))

    def _wrote(self, subscription: str, index: int) -> None:
        """ARM answered a write of step `index`: its lane's budget has room for another. The
        room is taken at the next start (a finishing step's, or the caller's recheck)."""
        with self.changed:
            if index not in self.past_write:
                self.past_write.add(index)
                self.to_write[subscription] -= 1

    def _finished(self, subscription: str, index: int, future: Future[R]) -> None:
        with self.changed:
            self.in_flight[subscription] -= 1
            if index in self.past_write:
                self.past_write.discard(index)
            else:
                self.to_write[subscription] -= 1
            if future.exception() is not None:
                self.failed = True
            elif self._may_refill() and self._refill():
                return  # the room this step left is taken here: the caller's thread sleeps on
            self.changed.notify()

    def _refill(self) -> bool:
        """Start what fits from this finishing thread; True if waiting steps remain for later
        finishers. A start the pool refuses ends the run with that error (concurrent.futures
        only logs what a done-callback raises: the step would be lost)."""
        try:
            return self._start_what_fits() and bool(self.waiting)
        except Exception as exc:  # noqa: BLE001 - raised by run() in the caller's thread
            self.refused, self.failed = exc, True
            return False

    def _may_refill(self) -> bool:
        """Whether a finishing step may start waiting ones itself: not after a failure or a
        stop (the caller's thread handles those), nor from inside `_start_what_fits` (a step
        that finished at once)."""
        return bool(self.waiting) and not (self.failed or self.starting or self._stopping())
