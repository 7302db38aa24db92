"""What the thread-per-target model costs in CPU per ARM call, and what one thread driving every
transfer (libcurl's multi interface) would cost instead: the same registry GET, with the same
ARM latency on the emulator, `--in-flight` at a time, three ways:

- the product's `Arm.get` from `--in-flight` threads (a run's worker threads);
- a bare libcurl handle per thread, no Python of ours (what the threads cost without our code);
- one thread driving `--in-flight` bare handles through one `CurlMulti` (no thread per call).

CPU is `time.process_time()` of this process over the calls (the emulator is another process).
The first and second rows part what our Python costs from what the threads cost; the second and
third, what the execution model costs: many threads each waiting on its own call wake one by
one, each to caches another thread filled, while one thread takes every answer that arrived in
one wake-up. Issue 27's CPU per target (docs/performance.md) is set by this.

    .venv/bin/python bench/thread_model.py [--calls 3000] [--in-flight 16 256] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pycurl

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.one_registry import (  # noqa: E402
    API_VERSION,
    REGISTRY,
    bare_handle,
    footer,
    in_threads,
    registry_stack,
)

if TYPE_CHECKING:
    from rotation.azure.arm import Arm


def bare_threads(calls: int, threads: int) -> tuple[float, float]:
    handles = [bare_handle() for _ in range(threads)]
    free = list(handles)

    def call() -> object:
        handle, parts = free.pop()  # list.pop is atomic: a handle for each thread at a time
        try:
            parts.clear()
            handle.perform()
            return handle.getinfo(pycurl.RESPONSE_CODE)
        finally:
            free.append((handle, parts))

    return in_threads(calls, threads, call)


def one_thread_multi(calls: int, in_flight: int) -> tuple[float, float]:
    """One thread, `in_flight` transfers at a time through one CurlMulti."""
    multi = pycurl.CurlMulti()
    cpu, wall = time.process_time(), time.monotonic()
    started = done = 0
    for handle, _ in (bare_handle() for _ in range(min(in_flight, calls))):
        multi.add_handle(handle)
        started += 1
    while done < calls:
        while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, ok, failed = multi.info_read()
            for handle in ok + [f[0] for f in failed]:
                multi.remove_handle(handle)
                done += 1
                if started < calls:
                    multi.add_handle(handle)  # the next call on the same handle (its connection kept)
                    started += 1
            if not queued:
                break
        if done < calls:
            multi.select(1.0)
    return (time.process_time() - cpu) / calls * 1000, time.monotonic() - wall


def arm_in_threads(arm: Arm, calls: int, threads: int) -> tuple[float, float]:
    return in_threads(calls, threads, lambda: arm.get(REGISTRY, API_VERSION))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[16, 256])
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    with registry_stack(args.latency_ms) as (_, arm):
        load = os.getloadavg()[0]
        print(f"| in flight | way | CPU per call | wall for {args.calls} calls |")
        print("|---|---|---|---|")
        for width in args.in_flight:
            ways: list[tuple[str, Callable[[int, int], tuple[float, float]]]] = [
                ("Arm.get, a thread per call", partial(arm_in_threads, arm)),
                ("bare libcurl, a thread per call", bare_threads),
                ("bare libcurl, one thread (multi)", one_thread_multi),
            ]
            for name, way in ways:
                cpu, wall = way(args.calls, width)
                print(f"| {width} | {name} | {cpu:.3f} ms | {wall:.2f} s |", flush=True)
    print(footer(args.latency_ms, load))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
