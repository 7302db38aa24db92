"""What a long command says on stderr while it works. On a terminal: a spinner or a transient
progress bar. Without one (a pipe, a CI log, `| tee`) rich shows neither, so a run looked dead,
through a 110 s wait for another run's lease too: there, one line when a phase or a lease wait
starts, a line every few seconds while steps finish, and one when the wait or the run ends.
The clock is injected, so tests need no sleeps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from rotation.doors.cli.context import err
from rotation.model.decisions import UPDATE

if TYPE_CHECKING:
    from rotation.model.results import StepResult

Clock = Callable[[], float]
EVERY_SECONDS = 5.0  # how often a run's progress line is printed without a terminal


def say(text: str) -> None:
    err.print(text, highlight=False, markup=False)


@contextmanager
def phase(text: str, show: bool = True) -> Iterator[None]:
    """A spinner on a terminal; one line on stderr without one (`show`: table output, so -o json
    keeps stderr for failures)."""
    if err.is_terminal:
        with err.status(text):
            yield
        return
    if show:
        say(text)
    yield


class StepLines:
    """A line every `every` seconds as a run's steps finish (steps finish in lanes, in threads),
    and the last one when the run ends."""

    def __init__(self, updates: int, clock: Clock = time.monotonic, every: float = EVERY_SECONDS) -> None:
        self.updates, self.clock, self.every = updates, clock, every
        self.started = self.last = clock()
        self.done = self.failed = 0
        self.lock = threading.Lock()
        say(f"updating {updates} consumer{'s' if updates != 1 else ''}…")

    def __call__(self, step: StepResult) -> None:
        if step.action != UPDATE:
            return
        with self.lock:
            self.done += 1
            self.failed += step.outcome == "failed"
            now = self.clock()
            if now - self.last >= self.every:
                self.last = now
                say(self.line(now))

    def line(self, now: float) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"updated {self.done} of {self.updates}{failed} in {now - self.started:.0f} s"

    def finish(self) -> None:
        say(self.line(self.clock()))


class LeaseWait:
    """Waiting for another run to release the key: a spinner on a terminal; without one, a line
    when the wait starts, every few seconds while it lasts, and when it ends."""

    def __init__(self, key_id: str, clock: Clock = time.monotonic, every: float = EVERY_SECONDS) -> None:
        self.key_id, self.clock, self.every = key_id, clock, every
        self.started: float | None = None
        self.last = 0.0

    @contextmanager
    def held(self, owner: str, until: datetime) -> Iterator[None]:
        """Around one pause of the wait, while run `owner` holds the lease until `until`."""
        text = f"waiting for run {owner} to release {self.key_id} (held until {until:%H:%M:%S} UTC)"
        now = self.clock()
        if err.is_terminal:
            self.started = now if self.started is None else self.started
            with err.status(text + "…"):
                yield
            return
        if self.started is None:
            self.started = self.last = now
            say(text)
        elif now - self.last >= self.every:
            self.last = now
            say(f"still {text}, {now - self.started:.0f} s so far")
        yield

    def ended(self, taken: bool) -> None:
        if self.started is None:
            return  # no wait: nothing to say
        waited = self.clock() - self.started
        say(f"{'took' if taken else 'gave up on'} the lease on {self.key_id} after waiting {waited:.0f} s")


def run_lines(updates: int) -> StepLines | None:
    """Progress lines for a run without a terminal (None on a terminal: the bar shows it)."""
    return None if err.is_terminal or not updates else StepLines(updates)
