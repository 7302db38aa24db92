"""Worker threads that keep the caller's context.

A thread pool runs its work in a fresh context, so without this the work would lose what the
caller set in `contextvars`: the OpenTelemetry span a target's span belongs under, and the door's
time budget (rotation/azure/budget.py) that caps each call's timeouts.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future


def in_context[T, R](fn: Callable[[T], R]) -> Callable[[T], R]:
    """`fn`, run each time in a copy of the context this was called in."""
    context = contextvars.copy_context()

    def run(item: T) -> R:
        return context.copy().run(fn, item)  # a copy per call: threads never share one context

    return run


def map_in_context[T, R](pool: Executor, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    return pool.map(in_context(fn), items)


def submit_in_context[R](pool: Executor, fn: Callable[[], R]) -> Future[R]:
    context = contextvars.copy_context()
    return pool.submit(context.run, fn)
