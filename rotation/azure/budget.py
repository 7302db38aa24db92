"""A door's total time budget, shared by every Azure and storage call made inside it.

Event Grid waits 30 s for an answer and the Functions host cuts a queue attempt at its
`functionTimeout`; a storage endpoint that accepts connections and never answers must not hold
a door past either. A door enters `door_budget(seconds)`; the clients' transport (clients.py)
caps each attempt's connect and read timeouts to what is left and refuses to start one once
nothing is, raising `BudgetExhausted`. The budget lives in a context variable, so it follows
the door's thread (work handed to a thread pool keeps only the per-call timeouts).

A run has a budget of its own (`run_budget`, ROTATION_TIME_BUDGET_SECONDS): it bounds the waits
of its Key Vault and ARM calls (Retry-After, polling, paging, reading an answer) but not storage,
so a run whose time is up can still record how it ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_Deadline = tuple[float, Callable[[], float]]  # the end, on the clock that measures it
_deadline: ContextVar[_Deadline | None] = ContextVar("door_deadline", default=None)
_run_deadline: ContextVar[_Deadline | None] = ContextVar("run_deadline", default=None)


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


@contextmanager
def run_budget(seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Bound the waits of the Key Vault and ARM calls inside the block to `seconds` in total."""
    token = _run_deadline.set((clock() + seconds, clock))
    try:
        yield
    finally:
        _run_deadline.reset(token)


def _left(current: _Deadline | None) -> float | None:
    if current is None:
        return None
    end, clock = current
    return end - clock()


def remaining() -> float | None:
    """Seconds left in the current door's budget; None outside any door."""
    return _left(_deadline.get())


def azure_remaining() -> float | None:
    """Seconds a Key Vault or ARM call may still take: the sooner of the door's and the run's
    ends; None outside both."""
    known = [left for left in (remaining(), _left(_run_deadline.get())) if left is not None]
    return min(known) if known else None


def check(what: str, *, azure: bool = False) -> None:
    """Raise BudgetExhausted when the current door (and, for an Azure call, the run) has no time
    left for `what`."""
    left = azure_remaining() if azure else remaining()
    if left is not None and left <= 0:
        raise BudgetExhausted(f"the time budget ran out before {what}")


def bounded_wait(seconds: float, what: str, *, cap: float) -> float:
    """The wait before `what`: `seconds` (as a service asked, say) cut to `cap`. A wait that
    would end past the door's or the run's budget raises BudgetExhausted at once: the call it
    waits for could not be made in time anyway."""
    wait = max(0.0, min(seconds, cap))
    left = azure_remaining()
    if left is not None and wait >= left:
        raise BudgetExhausted(
            f"the time budget ran out before {what} (a wait of {wait:.1f}s with {max(left, 0):.1f}s left)"
        )
    return wait
