"""Shards by subscription: one key's roll-out split over K processes, each working its own
subscriptions, as docs/scaling.md plans it across Functions instances (simulated here with
processes on one machine: what it shows is how the product's own CPU, one core per process
under the GIL, spreads; not the host's scale-out).

The estate is N registries spread over M subscriptions (bench/fanout.py's shape); every
Key Vault and ARM call gets the emulator's latency, writes take 1 s (Retry-After: 1). For each
K, the same estate is reset and K processes start together (a shared start instant, after
their imports), each reconciling the key over M/K subscriptions; the figure is the time from
the start instant to the last process's end, and the targets per second.

The shards run without the key's lease and each writes its own audit chain from the same key
head: the real design gives shards the parent's lease and chains of their own
(docs/scaling.md); here only the throughput is measured.

    .venv/bin/python bench/shards.py [--n 3000] [--subscriptions 30] [--shards 1 2] [--throttled]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fanout import KEY_ID, estate  # noqa: E402

START_DELAY_S = 4.0  # every shard has imported and built its clients by then


def subscriptions(count: int) -> list[str]:
    return [f"00000000-0000-0000-0002-{i:012x}" for i in range(count)]


def worker(start_at: float) -> None:
    """One shard: reconcile the key over ROTATION_SUBSCRIPTIONS, from `start_at` on."""
    from rotation.model.ids import parse_key_id
    from rotation.model.request import new_request
    from rotation.service import service_for_environment

    service = service_for_environment()
    service.reconciler  # noqa: B018 - built before the start instant, as a warm instance has it
    time.sleep(max(0.0, start_at - time.time()))
    cpu = time.process_time()
    result = service.reconciler.run(new_request(parse_key_id(KEY_ID), "cli", "bench-shard"))
    print(
        json.dumps(
            {
                "end": time.time(),
                "cpu": time.process_time() - cpu,
                "verified": sum(1 for step in result.steps if step.outcome == "verified"),
                "failed": sum(1 for step in result.steps if step.outcome == "failed"),
            }
        ),
        flush=True,
    )


def run_shards(emulator: Any, n: int, subs: list[str], shards: int, throttled: bool) -> dict[str, Any]:
    admin = emulator.admin
    admin.reset(estate(n, subs))
    admin.configure(lroSeconds=1, retryAfter=1, armPageSize=100)
    admin.add_fault(latencyMs=50)
    admin.set_throttling(throttled)
    start_at = time.time() + START_DELAY_S
    procs = []
    for k in range(shards):
        env = {**os.environ, "ROTATION_SUBSCRIPTIONS": ",".join(subs[k::shards])}
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(start_at)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    outcomes = []
    for proc in procs:
        out, _ = proc.communicate(timeout=1800)
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(o["end"] for o in outcomes) - start_at
    return {
        "wall": wall,
        "cpu": sum(o["cpu"] for o in outcomes),
        "verified": sum(o["verified"] for o in outcomes),
        "failed": sum(o["failed"] for o in outcomes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--subscriptions", type=int, default=30)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--throttled", action="store_true")
    parser.add_argument("--worker", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker)
        return 0
    from bench.stack import local_stack

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, Python "
        f"{platform.python_version()}; N={args.n} registries over {args.subscriptions} subscriptions, "
        f"50 ms per call, LRO 1 s, throttling {'on' if args.throttled else 'off'}\n"
    )
    print(
        "| shards | wall s | targets/s | product CPU s (all shards) | verified | failed |\n|---|---|---|---|---|---|"
    )
    subs = subscriptions(args.subscriptions)
    with local_stack() as emulator:
        for shards in args.shards:
            r = run_shards(emulator, args.n, subs, shards, args.throttled)
            print(
                f"| {shards} | {r['wall']:.1f} | {args.n / r['wall']:.0f} | {r['cpu']:.1f} | "
                f"{r['verified']}/{args.n} | {r['failed']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
