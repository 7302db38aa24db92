"""Estate benchmark: the inventory's cost, and what canary waves add to a rollout.

1. `inventory.collect` over N registries using K keys in two subscriptions, 50 ms of emulator
   latency on every call: wall time, ARM calls (one list per kind and subscription, whatever
   K is) and Key Vault calls per key.
2. One key rotated into N registries as one wave, then as three waves (tags 0, 1, untagged),
   LRO 1 s: wall time and the extra read-backs the gate costs.

    .venv/bin/python bench/estate.py [--consumers 100 1000] [--keys 20] [--rollout 96]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.stack import local_stack  # noqa: E402
from emulator import EmulatorProcess  # noqa: E402
from tests import scenarios as s  # noqa: E402

OLD, NEW = s.vid("old"), s.vid("new")
KEY_VERSIONS = (s.version("old", created="-200d"), s.version("new", created="-1h"))


def estate(n: int, keys: int, waves: bool = False) -> dict[str, Any]:
    def tags(i: int) -> dict[str, str]:
        wave = (None, "0", "1")[i % 3] if waves else None
        return {"cmk-rotation-wave": wave} if wave else {}

    registries = [
        s.registry(
            f"reg{i:04d}", s.key_id(f"key{i % keys:02d}", OLD), sub=(s.SUB_A, s.SUB_B)[i % 2], tags=tags(i)
        )
        for i in range(n)
    ]
    return s.scenario({f"key{k:02d}": s.key(*KEY_VERSIONS) for k in range(keys)}, registries=registries)


def fresh_service(emulator: EmulatorProcess, scenario: dict[str, Any], latency_ms: int) -> Any:
    from rotation.service import forget_services, service_for_environment

    emulator.admin.reset(scenario)
    emulator.admin.configure(lroSeconds=1, retryAfter=1, armPageSize=100)
    emulator.admin.add_fault(latencyMs=latency_ms)
    forget_services()
    service = service_for_environment()
    emulator.admin.clear_calls()
    return service


def inventory_once(emulator: EmulatorProcess, n: int, keys: int, latency_ms: int) -> str:
    from rotation.estate.inventory import collect

    service = fresh_service(emulator, estate(n, keys), latency_ms)
    started = time.monotonic()
    found = collect(service.reconciler)
    wall = time.monotonic() - started
    calls = emulator.admin.calls()["calls"]
    arm = sum(1 for c in calls if c["host"] == "management.azure.com")
    vault = sum(1 for c in calls if c["host"].endswith("vault.azure.net") and c["status"] < 400)
    return f"| {n} | {keys} | {len(found.rows)} | {wall:.2f} | {arm} | {vault / keys:.1f} |"


def rollout_once(emulator: EmulatorProcess, n: int, waves: bool, latency_ms: int) -> tuple[float, int, str]:
    from rotation.model.ids import parse_key_id
    from rotation.model.request import new_request

    service = fresh_service(emulator, estate(n, 1, waves), latency_ms)
    started = time.monotonic()
    result = service.reconciler.run(new_request(parse_key_id(s.key_id("key00")), "cli", "bench"))
    wall = time.monotonic() - started
    gets = sum(
        1
        for c in emulator.admin.calls()["calls"]
        if c["method"] == "GET" and "/registries/" in c["path"] and "operationStatuses" not in c["path"]
    )
    return wall, gets, result.status


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--consumers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--rollout", type=int, default=96)
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    with local_stack(ROTATION_SUBSCRIPTIONS=f"{s.SUB_A},{s.SUB_B}") as emulator:
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"latency {args.latency_ms} ms per call\n")
        print(
            "| consumers | keys | rows | wall s | ARM calls | Key Vault calls/key |\n|---|---|---|---|---|---|"
        )
        for n in args.consumers:
            print(inventory_once(emulator, n, args.keys, args.latency_ms), flush=True)
        one = rollout_once(emulator, args.rollout, False, args.latency_ms)
        three = rollout_once(emulator, args.rollout, True, args.latency_ms)
        print(
            f"\nrollout of {args.rollout} registries, LRO 1 s, concurrency {os.environ.get('ROTATION_CONCURRENCY', 'auto')}:"
        )
        print(f"  one wave:    {one[0]:.1f} s, {one[1]} registry GETs, {one[2]}")
        print(f"  three waves: {three[0]:.1f} s, {three[1]} registry GETs, {three[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
