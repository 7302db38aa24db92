"""Issue 15's targets, each as a ratio in one run (`make bench`, a few minutes on 2 cores).

Prints, on the local stack (50 ms per Key Vault and ARM call, LRO 1 s with Retry-After: 1):
- throttled, 1 subscription, N registries (default 1000): wall / the floor, reads per target
  (resource GETs + polls), 429s by what they refused, and targets failed;
- throttled, 4 subscriptions x N/4: wall / the slowest subscription's floor;
  a floor is one target's run alone plus what ARM's buckets need past their burst, the slower
  of writes ((n - 200) / 10 s) and reads ((2n - 250) / 25 s, two reads a target);
- N = 100 in 1 subscription, unthrottled: wall / (one target's run: key, discovery, one update);
- when the first write went out, and the product's CPU per target;
- cold start: `import function_app` and `rotation --help`, medians of 5, against 0.25 s.
The 10,000-consumer mixed run is its own target (`make bench-10k`, bench/mixed_kinds.py).

    .venv/bin/python bench/targets.py [--throttled 1000] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fanout import SUB_A, SUB_B, run_once  # noqa: E402
from bench.stack import local_stack  # noqa: E402

SUBS = [SUB_A, SUB_B, "00000000-0000-0000-0000-00000000000c", "00000000-0000-0000-0000-00000000000d"]
GOAL_S = 0.25
READS_PER_TARGET = 2  # issue 15's goal; measured and printed beside each throttled figure


def bucket_floor(per_subscription: int) -> float:
    """Seconds ARM's buckets need for one subscription's targets past their burst: writes 200
    at once then 10 a second, reads (READS_PER_TARGET each: the poll and the read-back) 250 at
    once then 25 a second; the slower of the two."""
    writes = max(0, per_subscription - 200) / 10
    reads = max(0, READS_PER_TARGET * per_subscription - 250) / 25
    return max(writes, reads)


def floor(per_subscription: int, one_target: float) -> float:
    """No run ends before one target alone would (key, discovery, write, LRO, read-back), plus
    the time the subscription's buckets need for the rest."""
    return one_target + bucket_floor(per_subscription)


def reads_per_target(r: dict[str, Any]) -> float:
    return (r["reads"] + r["polls"]) / r["n"]


def line(label: str, ratio: float, goal: str, extra: str = "") -> None:
    print(f"| {label} | {ratio:.2f} | {goal} | {extra} |", flush=True)


def cold_start(runs: int = 5) -> tuple[float, float]:
    """Medians (s) of `import function_app` (in-process, after interpreter start) and of a
    whole `rotation --help` (a fresh process, as a person's shell runs it)."""
    probe = "import time; t = time.perf_counter(); import function_app; print(time.perf_counter() - t)"
    imports, helps = [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
        )
        imports.append(float(out.stdout.strip().splitlines()[-1]))
        timed = (
            "import subprocess, sys, time; t = time.perf_counter(); "
            "subprocess.run([sys.executable, '-m', 'rotation', '--help'], capture_output=True, check=True); "
            "print(time.perf_counter() - t)"
        )
        out = subprocess.run(
            [sys.executable, "-c", timed], cwd=REPO, capture_output=True, text=True, check=True
        )
        helps.append(float(out.stdout.strip()))
    return statistics.median(imports), statistics.median(helps)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--throttled", type=int, default=1000, help="N for the throttled runs")
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load {load:.1f}, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}\n"
    )
    print("| figure | ratio | goal | detail |\n|---|---|---|---|")
    with local_stack() as emulator:
        latency = args.latency_ms
        single = run_once(emulator, 1, [SUB_A], throttled=False, latency_ms=latency)
        r = run_once(emulator, 100, [SUB_A], throttled=False, latency_ms=latency)
        line(
            "N=100, 1 subscription, unthrottled: wall / one target's run",
            r["wall"] / single["wall"],
            "<= 2",
            f"{r['wall']:.1f} s / {single['wall']:.2f} s; first write at {r['first_write_s']:.2f} s; "
            f"CPU {1000 * r['cpu_s'] / r['n']:.1f} ms/target",
        )
        n, one = args.throttled, single["wall"]
        r = run_once(emulator, n, [SUB_A], throttled=True, latency_ms=latency)
        least = floor(n, one)
        line(
            f"throttled, 1 subscription, N={n}: wall / floor",
            r["wall"] / least,
            "<= 1.1",
            f"{r['wall']:.1f} s / {least:.1f} s ({one:.2f} s + buckets {bucket_floor(n):.1f} s); reads/target {reads_per_target(r):.2f} (goal <= 2; "
            f"GETs {r['reads'] / n:.2f}, polls {r['polls'] / n:.2f}); 429s {r['refused']}; failed "
            f"{r['failed']}; first write at {r['first_write_s']:.2f} s; CPU {1000 * r['cpu_s'] / n:.1f} ms/target",
        )
        each = n // len(SUBS)
        r = run_once(emulator, n, SUBS, throttled=True, latency_ms=latency)
        least = floor(each, one)
        line(
            f"throttled, {len(SUBS)} subscriptions x {each}: wall / slowest subscription's floor",
            r["wall"] / least,
            "<= 1.2",
            f"{r['wall']:.1f} s / {least:.1f} s ({one:.2f} s + buckets {bucket_floor(each):.1f} s); "
            f"reads/target {reads_per_target(r):.2f}; 429s {r['refused']}; failed {r['failed']}; "
            f"CPU {1000 * r['cpu_s'] / n:.1f} ms/target",
        )
    imported, helped = cold_start()
    line("`import function_app` / 0.25 s", imported / GOAL_S, "<= 1", f"median {imported:.3f} s of 5")
    line("`rotation --help` / 0.25 s", helped / GOAL_S, "<= 1", f"median {helped:.3f} s of 5 (whole process)")
    print(
        "\nNot run here: N=10,000 mixed (`make bench-10k`); the audit's storage calls before the first"
        " write and a transient storage error are counted by tests/integration/test_audit_flush.py."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
