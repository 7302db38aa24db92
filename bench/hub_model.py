"""The execution model issue 27's CPU per target asks for, measured before it is built: the
product's own `Arm.get` (its pipeline, policies and libcurl transport, unchanged) from N
greenlets in ONE thread whose hub drives every transfer through libcurl's multi interface,
against the same call from N threads (a run's worker threads today).

A greenlet runs ordinary synchronous code and is switched out only where it would block: here
the transport's transfer and a sleep. So the kinds' modules, the pipeline and the pollers need
no change to run this way; what would change is where a target waits. This bench swaps the
transport's exchange (`rotation.azure.curl._performed`) and `time.sleep` for the hub's in its
own process, for the measurement only: it is not the product's code path, and `greenlet` is not
a project dependency (`.venv/bin/pip install greenlet` to run it).

    .venv/bin/python bench/hub_model.py [--calls 3000] [--in-flight 256] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import greenlet
import pycurl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import rotation.azure.curl as curl_transport  # noqa: E402
from bench.one_registry import API_VERSION, REGISTRY, footer, in_threads, registry_stack  # noqa: E402


class Hub:
    """Runs tasks as greenlets in the calling thread: a task that starts a transfer or sleeps is
    switched out, and switched back in when its transfer ended or its time came."""

    def __init__(self) -> None:
        self.multi = pycurl.CurlMulti()
        self.main = greenlet.getcurrent()
        self.ready: deque[tuple[greenlet.greenlet, Any]] = deque()
        self.transfers: dict[pycurl.Curl, greenlet.greenlet] = {}
        self.timers: list[tuple[float, int, greenlet.greenlet]] = []

    def inside(self) -> bool:
        return greenlet.getcurrent() is not self.main

    def transfer(self, curl: pycurl.Curl) -> pycurl.error | None:
        """From a task: the transfer on a prepared handle; its error, or None."""
        self.multi.add_handle(curl)
        self.transfers[curl] = greenlet.getcurrent()
        return self.main.switch()

    def sleep(self, seconds: float) -> None:
        task = greenlet.getcurrent()
        heapq.heappush(self.timers, (time.monotonic() + seconds, id(task), task))
        self.main.switch()

    def run(self, tasks: list[Callable[[], object]]) -> None:
        self.ready.extend((greenlet.greenlet(lambda _=None, t=t: t()), None) for t in tasks)
        while self.ready or self.transfers or self.timers:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                self.ready.append((heapq.heappop(self.timers)[2], None))
            while self.ready:
                task, value = self.ready.popleft()
                task.switch(value)
            if self.transfers:
                self._drive()
            elif self.timers:
                time.sleep(max(0.0, self.timers[0][0] - time.monotonic()))

    def _drive(self) -> None:
        while self.multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, ended, failed = self.multi.info_read()
            for curl in ended:
                self.multi.remove_handle(curl)
                self.ready.append((self.transfers.pop(curl), None))
            for curl, code, message in failed:
                self.multi.remove_handle(curl)
                self.ready.append((self.transfers.pop(curl), pycurl.error(code, message)))
            if not queued:
                break
        if not self.ready:
            next_timer = self.timers[0][0] - time.monotonic() if self.timers else 1.0
            self.multi.select(max(0.0, min(1.0, next_timer)))


_BLOCKING_EXCHANGE, _BLOCKING_SLEEP = curl_transport._performed, time.sleep
_HUB: Hub | None = None  # the hub running now (in_hub), if any


def _exchange(handle: Any, request: Any) -> Any:
    """The transport's exchange: through the hub inside one of its tasks, blocking elsewhere."""
    hub = _HUB
    if hub is None or not hub.inside():
        return _BLOCKING_EXCHANGE(handle, request)
    error = hub.transfer(handle.curl)
    if error is None:
        return handle.gathered.answer()
    handle.settled = None
    failure = curl_transport._failed(request, handle.gathered, error)
    handle.gathered.start(None, resend=False)
    return failure


def _sleep(seconds: float) -> None:
    hub = _HUB
    (hub.sleep if hub is not None and hub.inside() else _BLOCKING_SLEEP)(seconds)


def install() -> None:
    """Before the clients are built: some take `time.sleep` when they are made."""
    curl_transport._performed, time.sleep = _exchange, _sleep  # type: ignore[assignment]


def in_hub(calls: int, in_flight: int, call: Callable[[], object]) -> tuple[float, float]:
    """(CPU ms per call, wall s): `calls` calls from `in_flight` greenlets in this thread."""
    global _HUB
    _HUB = hub = Hub()
    try:
        each = calls // in_flight
        cpu, wall = time.process_time(), time.monotonic()
        hub.run([lambda: [call() for _ in range(each)]] * in_flight)
        return (time.process_time() - cpu) / (each * in_flight) * 1000, time.monotonic() - wall
    finally:
        _HUB = None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    install()
    with registry_stack(args.latency_ms) as (_, arm):
        load = os.getloadavg()[0]
        print(f"| way ({args.in_flight} in flight) | CPU per `Arm.get` | wall for {args.calls} calls |")
        print("|---|---|---|")
        for _ in range(args.rounds):
            for name, way in (
                ("a thread per call (today)", in_threads),
                ("greenlets, one thread, libcurl multi", in_hub),
            ):
                cpu, wall = way(args.calls, args.in_flight, lambda: arm.get(REGISTRY, API_VERSION))
                print(f"| {name} | {cpu:.3f} ms | {wall:.2f} s |", flush=True)
    print(footer(args.latency_ms, load))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
