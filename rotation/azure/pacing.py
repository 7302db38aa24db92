"""Pace ARM calls per subscription from ARM's own signals, shared by every worker of a subscription.

ARM throttles each subscription with token buckets (reads, writes, deletes) and says how much is
left in `x-ms-ratelimit-remaining-subscription-<kind>` and, when a bucket is empty, answers 429 with
`Retry-After`. Sixteen workers backing off on their own each learn that separately and retry in a
herd; one pacer per process instead holds a not-before instant per (subscription, kind): a 429
moves it to the end of `Retry-After` for everyone. Between answers it keeps the bucket as it can
tell it (what ARM last said is left, refilled at the bucket's rate since, less the calls ARM may not
have counted yet: those let through after the answered one), and a call goes when that leaves a
token for it and RESERVE besides, so the bucket is spent to its end and calls stop meeting 429s at
all. Answers come back in another order than their calls went (hundreds in flight, completions
taken in batches): the budget an answer reports counts only if its call went after the one the
pacer last believed, else an older answer would undo the calls a newer one had counted.

`PacingPolicy` is the azure-core pipeline policy that applies it (in the `custom_hook_policy` slot
of the management clients and of rotation.azure.arm). It also tells the target a call works for
when its write was answered (`write_answered`): a target past its write spends no more of the
write budget, which is what the lanes (rotation/run/lanes.py) measure their width against.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy

from rotation import telemetry, waits
from rotation.azure import budget

_SUBSCRIPTION = re.compile(r"/subscriptions/([0-9a-fA-F-]{36})(?:/|$|\?)")
# ARM's documented per-subscription refill rates (tokens per second).
REFILL_PER_SECOND = {"reads": 25.0, "writes": 10.0, "deletes": 10.0}
# Tokens left unspent: the estimate cannot see other clients of the subscription's bucket.
RESERVE = 2
MAX_WAIT_SECONDS = 60.0  # never hold a call longer than this on one signal (ROTATION_MAX_RETRY_AFTER_SECONDS)


def call_kind(method: str) -> str:
    if method in ("GET", "HEAD"):
        return "reads"
    return "deletes" if method == "DELETE" else "writes"


# Called in the calling target's context when one of its writes got an answer other than a 429
# (ARM counted it): set per target by rotation/run/lanes.py.
write_answered: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "rotation.pacing.write_answered", default=None
)

READS_PER_TARGET = 2  # at most a status poll and the read-back (one for a kind that polls_resource)


@dataclass
class _Gate:
    not_before: float = 0.0  # a 429's Retry-After holds every call until then
    remaining: int | None = None  # what ARM last said is left in the bucket
    reported_at: float = 0.0  # when it said so
    in_flight: int = 0  # calls let through and not answered yet
    unseen: int = 0  # calls `remaining` may not count: let through after the answered one
    sent: int = 0  # calls let through so far; a call's number orders its answer among the others
    reported: int = 0  # the number of the call `remaining` came from (0: not known)
    # The numbers of the calls let through and not answered, in order. One let through before
    # the answered call may reach ARM after it (it waited for a connection): not counted either.
    open: list[int] = field(default_factory=list)

    def tokens(self, now: float, rate: float) -> float | None:
        """The bucket as this process can tell it (None until ARM has said)."""
        if self.remaining is None:
            return None
        return self.remaining + rate * (now - self.reported_at) - self.unseen


class Pacer:
    """Thread-safe; one per process (Clients holds it)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = waits.sleep,
        max_wait: float = MAX_WAIT_SECONDS,
    ) -> None:
        self._clock, self._sleep, self.max_wait = clock, sleep, max_wait
        self._gates: dict[tuple[str, str], _Gate] = {}
        self._lock = threading.Lock()

    def before(self, subscription: str, kind: str) -> float:
        """Wait until this subscription may make a call of this kind; returns the seconds waited."""
        return self.admit(subscription, kind)[0]

    def admit(self, subscription: str, kind: str) -> tuple[float, int]:
        """`before`, and the call's number for `after` (its place among the calls let through)."""
        with self._lock:
            gate = self._gates.setdefault((subscription.lower(), kind), _Gate())
            now = self._clock()
            start = max(now, gate.not_before)
            rate = REFILL_PER_SECOND.get(kind, 10.0)
            tokens = gate.tokens(start, rate)
            if tokens is not None and tokens < RESERVE + 1:  # the refill makes room for it then
                start += (RESERVE + 1 - tokens) / rate
            gate.in_flight += 1  # counted now: the calls deciding after this one see it
            gate.unseen += 1
            gate.sent += 1
            number = gate.sent
            gate.open.append(number)  # the numbers grow: the list stays in order
        wait = start - now
        if wait > 0:  # never past the door's or the run's budget
            try:
                wait = budget.bounded_wait(wait, "a paced ARM call", cap=self.max_wait)
            except BaseException:
                self.abandoned(subscription, kind, number)
                raise
            self._sleep(wait)
        return wait, number

    def abandoned(self, subscription: str, kind: str, sent: int | None = None) -> None:
        """A call let through got no answer (refused by the budget, or its connection failed);
        `sent`: its number from `admit`."""
        with self._lock:
            gate = self._gates.setdefault((subscription.lower(), kind), _Gate())
            gate.in_flight = max(0, gate.in_flight - 1)
            _answered(gate, sent)

    def after(self, subscription: str, kind: str, status: int, headers: Any, sent: int | None = None) -> None:
        """Learn from ARM's answer: a 429's Retry-After, the remaining budget. `sent`: the call's
        number from `admit`; without it the answer is taken as the newest, every call in flight
        not counted in it."""
        with self._lock:
            gate = self._gates.setdefault((subscription.lower(), kind), _Gate())
            now = self._clock()
            gate.in_flight = max(0, gate.in_flight - 1)
            _answered(gate, sent)
            if status == 429:
                wait = min(_retry_after_seconds(headers) or 1.0, self.max_wait)
                gate.not_before = max(gate.not_before, now + wait)
            remaining = _remaining(headers, kind)
            if remaining is None and status == 429:
                remaining = 0
            if remaining is None:
                return
            if sent is None:
                gate.remaining, gate.reported_at, gate.reported = remaining, now, 0
                gate.unseen = gate.in_flight  # still under way: ARM may not have counted them
            elif sent > gate.reported:  # else an older call's answer, overtaken by a newer one's
                gate.remaining, gate.reported_at, gate.reported = remaining, now, sent
                # Let through after it, or before it and still unanswered: ARM may not have counted
                # them. (One before it still counts once answered: whether ARM took it before or
                # after the one believed, its answer cannot tell once the bucket has refilled.)
                gate.unseen = gate.sent - sent + bisect_left(gate.open, sent)

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


def _answered(gate: _Gate, sent: int | None) -> None:
    """Call `sent` is no longer open."""
    if sent is None:
        return
    at = bisect_left(gate.open, sent)
    if at < len(gate.open) and gate.open[at] == sent:
        del gate.open[at]


# The headers that say what is left of each bucket, the subscription's own first.
_REMAINING = {
    kind: (
        f"x-ms-ratelimit-remaining-subscription-{kind}",
        f"x-ms-ratelimit-remaining-subscription-global-{kind}",
    )
    for kind in ("reads", "writes", "deletes")
}


def _remaining(headers: Any, kind: str) -> int | None:
    for name in _REMAINING[kind]:
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

    _TARGET = "rotation.pacing.target"  # the call's (subscription, kind), found once per call

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer

    def on_request(self, request: PipelineRequest[Any]) -> None:
        target = _target(request.http_request.url, request.http_request.method)
        if target is not None:
            _, number = self.pacer.admit(*target)
            request.context[self._TARGET] = (*target, number)
        else:
            request.context[self._TARGET] = None

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        http = response.http_response
        if http.status_code == 429:
            telemetry.throttled(_host(request.http_request.url))
        target: tuple[str, str, int] | None = request.context.get(self._TARGET)
        if target is not None:
            subscription, kind, number = target
            self.pacer.after(subscription, kind, http.status_code, http.headers, sent=number)
            if kind == "writes" and http.status_code != 429:
                answered = write_answered.get()
                if answered is not None:
                    answered()

    def on_exception(self, request: PipelineRequest[Any]) -> None:
        target: tuple[str, str, int] | None = request.context.get(self._TARGET)
        if target is not None:
            self.pacer.abandoned(*target)


def _target(url: str, method: str) -> tuple[str, str] | None:
    found = _SUBSCRIPTION.search(url)
    return (found.group(1), call_kind(method)) if found else None


def _host(url: str) -> str:
    return url.split("/")[2] if "://" in url else url
