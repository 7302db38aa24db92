"""Pace ARM calls per subscription from ARM's own signals, shared by every worker of a subscription.

ARM throttles each subscription with token buckets (reads, writes, deletes) and says how much is
left in `x-ms-ratelimit-remaining-subscription-<kind>` and, when a bucket is empty, answers 429 with
`Retry-After`. Sixteen workers backing off on their own each learn that separately and retry in a
herd; one pacer per process instead holds a not-before instant per (subscription, kind): a 429
moves it to the end of `Retry-After` for everyone, and while the remaining budget is low, calls are
spaced at the bucket's refill rate so they stop meeting 429s at all.

`PacingPolicy` is the azure-core pipeline policy that applies it (in the `custom_hook_policy` slot
of the management clients and of rotation.azure.arm).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy

from rotation import telemetry
from rotation.azure import budget

_SUBSCRIPTION = re.compile(r"/subscriptions/([0-9a-fA-F-]{36})(?:/|$|\?)")
# ARM's documented per-subscription refill rates (tokens per second) and a low-water mark under
# which calls are spaced at that rate.
REFILL_PER_SECOND = {"reads": 25.0, "writes": 10.0, "deletes": 10.0}
LOW_WATER = {"reads": 25, "writes": 20, "deletes": 20}
MAX_WAIT_SECONDS = 60.0  # never hold a call longer than this on one signal (ROTATION_MAX_RETRY_AFTER_SECONDS)


def call_kind(method: str) -> str:
    if method in ("GET", "HEAD"):
        return "reads"
    return "deletes" if method == "DELETE" else "writes"


READS_PER_TARGET = 2  # at most a status poll and the read-back (one for a kind that polls_resource)


@dataclass
class _Gate:
    not_before: float = 0.0
    spaced: bool = False  # the budget is low: every call reserves one refill interval
    remaining: int | None = None  # what ARM last said is left in the bucket


class Pacer:
    """Thread-safe; one per process (Clients holds it)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = MAX_WAIT_SECONDS,
    ) -> None:
        self._clock, self._sleep, self.max_wait = clock, sleep, max_wait
        self._gates: dict[tuple[str, str], _Gate] = {}
        self._lock = threading.Lock()

    def before(self, subscription: str, kind: str) -> float:
        """Wait until this subscription may make a call of this kind; returns the seconds waited."""
        with self._lock:
            gate = self._gates.setdefault((subscription.lower(), kind), _Gate())
            now = self._clock()
            start = max(now, gate.not_before)
            if gate.spaced:
                gate.not_before = start + 1.0 / REFILL_PER_SECOND.get(kind, 10.0)
        wait = start - now
        if wait > 0:  # never past the door's or the run's budget
            wait = budget.bounded_wait(wait, "a paced ARM call", cap=self.max_wait)
            self._sleep(wait)
        return wait

    def after(self, subscription: str, kind: str, status: int, headers: Any) -> None:
        """Learn from ARM's answer: a 429's Retry-After, the remaining budget."""
        with self._lock:
            gate = self._gates.setdefault((subscription.lower(), kind), _Gate())
            now = self._clock()
            if status == 429:
                wait = min(_retry_after_seconds(headers) or 1.0, self.max_wait)
                gate.not_before = max(gate.not_before, now + wait)
                gate.spaced = True
            remaining = _remaining(headers, kind)
            if remaining is None and status == 429:
                remaining = 0
            if remaining is not None:
                gate.spaced = remaining <= LOW_WATER.get(kind, 20)
                gate.remaining = remaining

    def headroom(self, subscription: str) -> int | None:
        """How many more targets ARM would take from this subscription now, from the budget it
        last reported: the writes left, or the reads left over READS_PER_TARGET if fewer. None
        until ARM has reported the write budget (the lanes then keep their starting width)."""
        with self._lock:
            writes = self._gates.get((subscription.lower(), "writes"))
            reads = self._gates.get((subscription.lower(), "reads"))
            if writes is None or writes.remaining is None:
                return None
            if reads is None or reads.remaining is None:
                return writes.remaining
            return min(writes.remaining, reads.remaining // READS_PER_TARGET)


def _remaining(headers: Any, kind: str) -> int | None:
    for name in (
        f"x-ms-ratelimit-remaining-subscription-{kind}",
        f"x-ms-ratelimit-remaining-subscription-global-{kind}",
    ):
        value = headers.get(name)
        if value is not None and str(value).isascii() and str(value).strip().isdigit():
            return int(str(value).strip())
    return None


def _retry_after_seconds(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the retry layer handles those; the pacer falls back to 1 s


class PacingPolicy(SansIOHTTPPolicy[Any, Any]):
    """Waits before a call as the subscription's gate says; learns from every answer."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer

    def on_request(self, request: PipelineRequest[Any]) -> None:
        target = _target(request.http_request.url, request.http_request.method)
        if target is not None:
            self.pacer.before(*target)

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        http = response.http_response
        if http.status_code == 429:
            telemetry.throttled(_host(request.http_request.url))
        target = _target(request.http_request.url, request.http_request.method)
        if target is not None:
            self.pacer.after(*target, http.status_code, http.headers)


def _target(url: str, method: str) -> tuple[str, str] | None:
    found = _SUBSCRIPTION.search(url)
    return (found.group(1), call_kind(method)) if found else None


def _host(url: str) -> str:
    return url.split("/")[2] if "://" in url else url
