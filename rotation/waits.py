"""A wait on a target's path: the hub's (rotation/hub.py) when the target runs on one, so the
other targets go on meanwhile; `time.sleep` otherwise. The pollers', the pacer's and the retry
layer's waits take this."""

from __future__ import annotations

import time
from typing import Any

from rotation import hub


def sleep(seconds: float) -> None:
    running = hub.current()
    if running is not None:
        running.sleep(seconds)
    else:
        time.sleep(seconds)


# How often a target on the hub looks whether another thread's poller has ended.
POLLER_LOOK_SECONDS = 0.05


def for_poller(poller: Any, timeout: float | None = None) -> None:
    """Until an azure-core poller (its polling runs in the poller's own thread) has ended, or
    `timeout` seconds passed: `poller.wait` in a thread; on the hub, a look every
    POLLER_LOOK_SECONDS with the hub's wait between, so the other targets go on meanwhile."""
    if hub.current() is None:
        poller.wait(timeout)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while not poller.done():
        left = (
            POLLER_LOOK_SECONDS if deadline is None else min(POLLER_LOOK_SECONDS, deadline - time.monotonic())
        )
        if left <= 0:
            return
        sleep(left)
