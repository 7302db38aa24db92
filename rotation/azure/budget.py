"""A door's total time budget, shared by every Azure and storage call made inside it.

Event Grid waits 30 s for an answer and the Functions host cuts a queue attempt at its
`functionTimeout`; a storage endpoint that accepts connections and never answers must not hold
a door past either. A door enters `door_budget(seconds)`; the clients' transport (clients.py)
caps each attempt's connect and read timeouts to what is left and refuses to start one once
nothing is, raising `BudgetExhausted`. The budget lives in a context variable, so it follows
the door's thread (work handed to a thread pool keeps only the per-call timeouts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[tuple[float, Callable[[], float]] | None] = ContextVar("door_deadline", default=None)


class BudgetExhausted(Exception):
    """The door's time budget ran out before storage or Azure answered. Not an AzureError on
    purpose: the SDKs' retry policies must not retry it."""


@contextmanager
def door_budget(seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Bound every call inside the block to `seconds` in total (an enclosing budget that ends
    sooner still wins)."""
    end = clock() + seconds
    outer = _deadline.get()
    if outer is not None:
        end = min(end, outer[0] - outer[1]() + clock())
    token = _deadline.set((end, clock))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left in the current door's budget; None outside any door."""
    current = _deadline.get()
    if current is None:
        return None
    end, clock = current
    return end - clock()


def check(what: str) -> None:
    """Raise BudgetExhausted when the current door has no time left for `what`."""
    left = remaining()
    if left is not None and left <= 0:
        raise BudgetExhausted(f"the door's time budget ran out before {what}")
