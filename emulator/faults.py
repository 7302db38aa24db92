"""Fault injection, the call log, and ARM's per-subscription token-bucket throttling model."""

from __future__ import annotations

import fnmatch
import itertools
import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_FAULT_FIELDS = {
    "method",
    "host",
    "pathRegex",
    "status",
    "retryAfter",
    "count",
    "latencyMs",
    "drop",
    "lroResult",
    "dropResponse",
    "headers",
    "nextLink",
    "dripMs",
    "bodyBytes",
}
_LRO_RESULTS = {"Succeeded", "Failed", "Canceled"}


@dataclass
class Fault:
    id: int
    method: str | None
    host: str | None
    path_regex: re.Pattern[str] | None
    status: int | None
    retry_after: str | None
    remaining: int | None  # None: every matching call
    latency_ms: int
    drop: bool
    lro_result: str | None
    drop_response: bool = False  # handle the call, then close the connection without answering
    # A hostile or broken answer: headers set on it (say an LRO's `Azure-AsyncOperation` naming
    # another host), its JSON body's `nextLink` replaced, its body sent a byte every `drip_ms`, or
    # a body of `body_bytes` sent in chunks with no length (a list far too large).
    headers: dict[str, str | None] = field(default_factory=dict)  # None: take the header away
    next_link: str | None = None
    drip_ms: int = 0
    body_bytes: int = 0

    def matches(self, method: str, host: str, path: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method and self.method != method:
            return False
        if self.host and not fnmatch.fnmatch(host, self.host):
            return False
        return not (self.path_regex and not self.path_regex.search(path))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "host": self.host,
            "pathRegex": self.path_regex.pattern if self.path_regex else None,
            "status": self.status,
            "retryAfter": self.retry_after,
            "count": self.remaining,
            "latencyMs": self.latency_ms,
            "drop": self.drop,
            "dropResponse": self.drop_response,
            "lroResult": self.lro_result,
            "headers": self.headers,
            "nextLink": self.next_link,
            "dripMs": self.drip_ms,
            "bodyBytes": self.body_bytes,
        }


@dataclass
class FaultEffect:
    """What the matching faults do to one call."""

    latency_s: float = 0.0
    status: int | None = None
    retry_after: str | None = None
    drop: bool = False
    lro_result: str | None = None
    drop_response: bool = False
    headers: dict[str, str | None] = field(default_factory=dict)
    next_link: str | None = None
    drip_ms: int = 0
    body_bytes: int = 0
    fault_ids: list[int] = field(default_factory=list)

    def merge_answer(self, fault: Fault) -> None:
        """The answer-shaping parts of a matching fault (the first fault to set one wins)."""
        self.headers = {**fault.headers, **self.headers}
        self.next_link = self.next_link if self.next_link is not None else fault.next_link
        self.drip_ms = self.drip_ms or fault.drip_ms
        self.body_bytes = self.body_bytes or fault.body_bytes


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, spec: dict[str, Any]) -> int:
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object")
        unknown = set(spec) - _FAULT_FIELDS
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}; known: {sorted(_FAULT_FIELDS)}")
        lro_result = spec.get("lroResult")
        if lro_result is not None and lro_result not in _LRO_RESULTS:
            raise ValueError(f"lroResult: one of {sorted(_LRO_RESULTS)}")
        status = spec.get("status")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError("status: an HTTP error status (400-599)")
        count = spec.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count: a positive integer, or absent for every matching call")
        retry_after = spec.get("retryAfter")
        headers = spec.get("headers") or {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str | None) for k, v in headers.items()
        ):
            raise ValueError("headers: an object of header names to string values (null: remove it)")
        next_link = spec.get("nextLink")
        if next_link is not None and not isinstance(next_link, str):
            raise ValueError("nextLink: a string (the link the answer's body names)")
        for name in ("dripMs", "bodyBytes"):
            value = spec.get(name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name}: a whole number, 0 or more")
        fault = Fault(
            id=next(self._ids),
            method=(spec.get("method") or "").upper() or None,
            host=(spec.get("host") or "").lower() or None,
            path_regex=re.compile(spec["pathRegex"], re.IGNORECASE) if spec.get("pathRegex") else None,
            status=status,
            retry_after=None if retry_after is None else str(retry_after),
            remaining=count,
            latency_ms=int(spec.get("latencyMs") or 0),
            drop=bool(spec.get("drop")),
            lro_result=lro_result,
            drop_response=bool(spec.get("dropResponse")),
            headers=dict(headers),
            next_link=next_link,
            drip_ms=int(spec.get("dripMs") or 0),
            body_bytes=int(spec.get("bodyBytes") or 0),
        )
        with self._lock:
            self._faults.append(fault)
        return fault.id

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]

    def take(self, method: str, host: str, path: str) -> FaultEffect:
        """Consume one use of every fault matching this call and combine their effects."""
        effect = FaultEffect()
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, host, path):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                effect.fault_ids.append(fault.id)
                effect.latency_s += fault.latency_ms / 1000
                if effect.status is None and not effect.drop:
                    if fault.drop:
                        effect.drop = True
                    elif fault.status:
                        effect.status, effect.retry_after = fault.status, fault.retry_after
                effect.drop_response = effect.drop_response or fault.drop_response
                if fault.lro_result and effect.lro_result is None:
                    effect.lro_result = fault.lro_result
                effect.merge_answer(fault)
        return effect


class Holds:
    """The waits latency faults impose on calls. A release ends every wait under way at once, so
    a test can hold a call for as long as it needs (a long `latencyMs`) and let it go when ready."""

    def __init__(self) -> None:
        self._released = threading.Event()
        self._waiting = 0
        self._lock = threading.Lock()

    def wait(self, seconds: float) -> None:
        with self._lock:
            released = self._released
            self._waiting += 1
        try:
            released.wait(seconds)
        finally:
            with self._lock:
                self._waiting -= 1

    def release(self) -> int:
        """End the waits under way (later ones wait anew); how many there were."""
        with self._lock:
            released, self._released = self._released, threading.Event()
            waiting = self._waiting
        released.set()
        return waiting


class CallLog:
    def __init__(self) -> None:
        self._calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(
        self,
        method: str,
        host: str,
        path: str,
        status: int,
        *,
        dropped: bool = False,
        authorized: bool = False,
    ) -> None:
        entry = {"time": time.time(), "method": method, "host": host, "path": path, "status": status}
        if dropped:
            entry["dropped"] = True
        if authorized:  # the call carried an Authorization header (a token reached this host)
            entry["authorized"] = True
        with self._lock:
            self._calls.append(entry)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            calls = list(self._calls)
        counts = Counter(f"{c['method']} {c['host']}{c['path']}" for c in calls)
        by_status = Counter(str(c["status"]) for c in calls)
        return {"calls": calls, "counts": dict(counts), "byStatus": dict(by_status), "total": len(calls)}

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


# ARM's documented limits since 2024 (per subscription and caller): bucket size, refill per second.
ARM_BUCKETS = {"reads": (250, 25.0), "writes": (200, 10.0), "deletes": (200, 10.0)}


class _Bucket:
    def __init__(self, size: int, rate: float) -> None:
        self.size, self.rate = size, rate
        self.tokens = float(size)
        self.stamp = time.monotonic()

    def take(self) -> tuple[bool, int, float]:
        """(allowed, whole tokens left, seconds until the next token)."""
        moment = time.monotonic()
        self.tokens = min(self.size, self.tokens + (moment - self.stamp) * self.rate)
        self.stamp = moment
        if self.tokens >= 1:
            self.tokens -= 1
            return True, int(self.tokens), 0.0
        return False, 0, (1 - self.tokens) / self.rate


class ArmThrottle:
    def __init__(self) -> None:
        self.enabled = False
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        self._lock = threading.Lock()
        self.throttled = 0

    def set_enabled(self, enabled: bool) -> None:
        with self._lock:
            self.enabled = enabled
            self._buckets.clear()

    @staticmethod
    def kind(method: str) -> str:
        if method in ("GET", "HEAD"):
            return "reads"
        return "deletes" if method == "DELETE" else "writes"

    def take(self, subscription: str, caller: str, method: str) -> tuple[bool, dict[str, str], int]:
        """(allowed, headers to send, Retry-After seconds when refused)."""
        kind = self.kind(method)
        if not self.enabled:  # ARM always says what is left: here, a bucket that never drains
            return True, {f"x-ms-ratelimit-remaining-subscription-{kind}": str(ARM_BUCKETS[kind][0] - 1)}, 0
        with self._lock:
            bucket = self._buckets.get((subscription, caller, kind))
            if bucket is None:
                bucket = self._buckets[(subscription, caller, kind)] = _Bucket(*ARM_BUCKETS[kind])
            allowed, left, wait = bucket.take()
            if not allowed:
                self.throttled += 1
        headers = {f"x-ms-ratelimit-remaining-subscription-{kind}": str(left)}
        return allowed, headers, max(1, math.ceil(wait))
