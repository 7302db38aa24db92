"""What one ARM GET costs in CPU back to back, and after its thread waited: the product's
`Arm.get` and a bare libcurl handle doing the same GET through the same proxy and CA bundle,
each N times in one thread, first with no pause, then with an idle pause between calls (as a
target's thread waits on ARM's latency and on `Retry-After` in a real run).

On a small virtual machine a thread that slept comes back to cold caches (and the hypervisor's
wake-up), and every call after a wait pays for it: this is why a run's CPU per target at low
load is about three times what the same calls cost back to back, and why cutting instructions
on the hot path moved the end-to-end figure less than the instruction counts. Thread CPU time
(`time.thread_time`): the pause's own CPU (the sleep's system call and wake-up, measured alone)
is taken off, so the column holds only what the call cost more.

    .venv/bin/python bench/wake_cost.py [--n 1000] [--pause-ms 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.one_registry import API_VERSION, REGISTRY, bare_handle, registry_arm  # noqa: E402


def per_call_us(call: Callable[[], object], n: int, pause: float) -> float:
    """Thread CPU per call (µs) over `n` calls, `pause` seconds idle after each."""
    for _ in range(20):  # connections made, caches of the hot path warm
        call()
    started = time.thread_time()
    for _ in range(n):
        call()
        if pause:
            time.sleep(pause)  # the idle wait under test: a thread that waited on ARM
    return (time.thread_time() - started) / n * 1e6


def bare_get() -> Callable[[], object]:
    """The same GET on one reused libcurl handle: what libcurl and TLS cost without our Python."""
    handle, parts = bare_handle()

    def call() -> object:
        parts.clear()
        handle.perform()
        return parts

    return call


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--pause-ms", type=float, default=10.0)
    args = parser.parse_args()
    pause = args.pause_ms / 1000
    with registry_arm() as arm:
        load = os.getloadavg()[0]
        rows = [
            ("Arm.get", lambda: arm.get(REGISTRY, API_VERSION)),
            ("bare libcurl GET", bare_get()),
        ]
        alone = per_call_us(lambda: None, args.n, pause)  # the sleep's own CPU: taken off below
        print(f"| call | back to back, µs CPU | after {args.pause_ms:g} ms idle, µs CPU | ratio |")
        print("|---|---|---|---|")
        for name, call in rows:
            hot, cold = per_call_us(call, args.n, 0.0), per_call_us(call, args.n, pause) - alone
            print(f"| {name} | {hot:.0f} | {cold:.0f} | {cold / hot:.2f}x |", flush=True)
        print(f"| the pause alone (taken off the column before) | — | {alone:.0f} | — |")
    print(
        f"\nn={args.n}; load {load:.1f} -> {os.getloadavg()[0]:.1f}; {platform.machine()} "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
