"""Asking a run to stop: SIGINT (Ctrl-C), SIGTERM (the Functions host stopping an instance).

A signal does not raise in the middle of a write: it only asks. The run then starts no new
write, gives the writes under way a grace period to finish and be recorded, records the rest
as not started, and closes as `interrupted` (run/reconcile.py). A second signal ends the grace
at once (the writes still under way are recorded as in flight); a third is the user insisting:
KeyboardInterrupt, as without this module.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

# Long enough for an ordinary ARM write and its read-back; short of the ~30 s a host that
# stops an instance waits before it kills it.
STOP_GRACE_SECONDS = 15.0
INTERRUPTED = "Interrupted"  # the error code of a step a signal kept from starting


class Stop:
    """Thread-safe; `ask` is safe to call from a signal handler (no lock is taken)."""

    def __init__(
        self, grace_seconds: float = STOP_GRACE_SECONDS, clock: Callable[[], float] = time.monotonic
    ):
        self.grace_seconds = grace_seconds
        self.clock = clock
        self.reason: str | None = None
        self._asked_at: float | None = None
        self._asked = threading.Event()
        self._hurry = threading.Event()

    @property
    def asked(self) -> bool:
        return self._asked.is_set()

    def ask(self, reason: str) -> None:
        """The first ask names the reason and starts the grace; a later one ends the grace."""
        if self._asked.is_set():
            self._hurry.set()
            return
        self.reason, self._asked_at = reason, self.clock()
        self._asked.set()

    def grace_left(self) -> float:
        """Seconds the writes under way may still take (the full grace until asked)."""
        if self._asked_at is None:
            return self.grace_seconds
        if self._hurry.is_set():
            return 0.0
        return max(0.0, self.grace_seconds - (self.clock() - self._asked_at))


@contextmanager
def signals_ask(stop: Stop, on_ask: Callable[[str, bool], None] | None = None) -> Iterator[Stop]:
    """While inside, SIGINT and SIGTERM ask `stop` instead of ending the process (a third one
    raises KeyboardInterrupt). `on_ask(signal name, first)` tells the user. Only the main
    thread may set signal handlers: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    received = 0

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        if received > 2:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        stop.ask(name)
        if on_ask is not None:
            on_ask(name, received == 1)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
