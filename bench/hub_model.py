"""CPU of the product's own `Arm.get` (its pipeline, policies and libcurl transport) from N
targets on the hub (rotation/hub.py, `ROTATION_EXECUTION=hub`: greenlets on one thread that
drives every transfer through libcurl's multi interface) against the same call from N threads
(a run's worker threads with `ROTATION_EXECUTION=threads`).

    .venv/bin/python bench/hub_model.py [--calls 3000] [--in-flight 256] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import wait
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.one_registry import API_VERSION, REGISTRY, footer, in_threads, registry_stack  # noqa: E402
from rotation.hub import Hub  # noqa: E402


def in_hub(calls: int, in_flight: int, call: Callable[[], object]) -> tuple[float, float]:
    """(CPU ms per call, wall s): `calls` calls from `in_flight` targets on one hub."""
    each = calls // in_flight
    hub = Hub()
    cpu, wall = time.process_time(), time.monotonic()
    done, _ = wait([hub.submit(lambda: [call() for _ in range(each)]) for _ in range(in_flight)])
    hub.shutdown()
    for future in done:
        future.result()  # raises what a target raised
    return (time.process_time() - cpu) / (each * in_flight) * 1000, time.monotonic() - wall


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with registry_stack(args.latency_ms) as (_, arm):
        load = os.getloadavg()[0]
        print(f"| way ({args.in_flight} in flight) | CPU per `Arm.get` | wall for {args.calls} calls |")
        print("|---|---|---|")
        for _ in range(args.rounds):
            for name, way in (
                ("a thread per call", in_threads),
                ("the hub (one thread, libcurl multi)", in_hub),
            ):
                cpu, wall = way(args.calls, args.in_flight, lambda: arm.get(REGISTRY, API_VERSION))
                print(f"| {name} | {cpu:.3f} ms | {wall:.2f} s |", flush=True)
    print(footer(args.latency_ms, load))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
