"""A wait on a target's path: the hub's (rotation/hub.py) when the target runs on one, so the
other targets go on meanwhile; `time.sleep` otherwise. The pollers', the pacer's and the retry
layer's waits take this.

Which hub runs the calling code is kept here, not in rotation/hub.py, so the modules that wait
(the retry layer, the pacer) do not load greenlet and libcurl with them: only a hub's thread does.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol


class Hub(Protocol):
    """What a hub (rotation/hub.py, which imports this module) offers the code it runs."""

    main: Any  # the hub thread's own greenlet

    def transfer(self, curl: Any) -> Any: ...

    def sleep(self, seconds: float) -> None: ...


_local = threading.local()  # `hub`: the hub whose thread this is (set by Hub while it runs)


def serving(hub: Hub | None) -> None:
    """Called by a hub's thread as it starts (its hub) and ends (None)."""
    _local.hub = hub


def current_hub() -> Hub | None:
    """The hub running the calling code as one of its targets, if any."""
    hub: Hub | None = getattr(_local, "hub", None)
    if hub is None:
        return None
    import greenlet  # loaded already: only a hub's thread gets here

    return None if greenlet.getcurrent() is hub.main else hub


def sleep(seconds: float) -> None:
    running = current_hub()
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
    if current_hub() is None:
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
