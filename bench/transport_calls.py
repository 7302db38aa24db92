"""CPU per ARM call through the product's clients and transport: one registry read with
`Clients.arm().get` from 16 threads against the emulator (its latency and CPU are another
process's), `time.process_time()` of this process divided by the calls.

    .venv/bin/python bench/transport_calls.py [--calls 3000] [--threads 16]

Run it from two checkouts in turn (say main and a branch) to compare their HTTP paths.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.one_registry import API_VERSION, REGISTRY, registry_arm  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    with registry_arm() as arm:
        for _ in range(200):  # warm: token, pools, connections
            arm.get(REGISTRY, API_VERSION)
        load = os.getloadavg()[0]
        started = time.process_time()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda _: arm.get(REGISTRY, API_VERSION), range(args.calls)))
        cpu = time.process_time() - started
    print(
        f"{REPO.name}: {cpu / args.calls * 1000:.3f} ms CPU per ARM GET ({args.calls} calls, "
        f"{args.threads} threads); load {load:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
