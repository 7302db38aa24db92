"""Where the product's CPU goes in one real run: `bench.fanout.run_once` (registries) or
`bench.mixed_kinds.run_once` (every kind), on the local stack, profiled over all threads.

Prints CPU per target (`time.process_time()` around the run, as the benches measure it) and,
with yappi installed (`.venv/bin/pip install yappi`; not a project dependency), the functions
with the most CPU, inclusive and self, summed over every worker thread. `--phases` (mixed
only): the run's CPU by phase instead (bench/phases.py: thread CPU clocks around the phases'
functions, no profiler), and each thread's CPU, so nothing of the bench hides in the figure.

    .venv/bin/python bench/profile_run.py [--bench fanout|mixed] [--n 1000] [--top 40] [--no-profile | --phases]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import fanout, mixed_kinds  # noqa: E402
from bench.phases import Phases, ThreadClocks  # noqa: E402
from emulator import EmulatorProcess, use_emulator  # noqa: E402
from emulator.azurite import Azurite  # noqa: E402

# The product's settings for every run (fanout.run_once and mixed_kinds.run_once set the
# subscriptions); the same as those benches' own main().
SETTINGS = {
    "ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.net",
    "ROTATION_CONCURRENCY": "16",
    "ROTATION_TIME_BUDGET_SECONDS": "3600",
}


def run(
    emulator: EmulatorProcess,
    bench: str,
    n: int,
    latency_ms: int,
    before_run: Callable[[], None] | None = None,
) -> tuple[int, float, float, str]:
    """(targets, wall s, CPU s, status) of one unthrottled run."""
    if bench == "fanout":
        r = fanout.run_once(emulator, n, [fanout.SUB_A, fanout.SUB_B], throttled=False, latency_ms=latency_ms)
        return n, r["wall"], r["cpu_s"], r["status"]
    subs = mixed_kinds.subscriptions(2)
    m = mixed_kinds.run_once(emulator, mixed_kinds.estate(n, subs), subs, latency_ms, False, before_run)
    return m["steps"], m["wall"], m["cpu"], explained_status(m["status"], m["actions"])


def by_phase(emulator: EmulatorProcess, args: argparse.Namespace) -> tuple[int, float, float, str]:
    """The mixed run with bench/phases.py's clocks: its CPU by phase, then by thread."""
    phases, threads = Phases(), ThreadClocks()

    def before_run() -> None:
        phases.reset()
        threads.start()

    with phases.installed():
        result = run(emulator, "mixed", args.n, args.latency_ms, before_run)
        threads.stop()
    targets, _, cpu, _ = result
    print(
        "\n".join(["", f"-- CPU by phase, N={args.n} ({targets} consumers) --", *phases.lines(cpu, targets)])
    )
    print("\n".join(["", "-- CPU by thread over the run --", *threads.lines(targets)]))
    return result


def explained_status(status: str, actions: Counter[str]) -> str:
    """The run's status, and the steps that ask for a person: the mixed estate holds AKS clusters
    (manual-required) and container groups (redeploy-required), so `needs-attention` is its
    status when nothing went wrong."""
    from rotation.model.decisions import NEEDS_PERSON

    asked = ", ".join(
        f"{count} {action}" for action, count in sorted(actions.items()) if action in NEEDS_PERSON
    )
    return f"{status} ({asked})" if asked else status


def profiled(emulator: EmulatorProcess, args: argparse.Namespace) -> tuple[int, float, float, str]:
    import yappi

    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)
    try:
        result = run(emulator, args.bench, args.n, args.latency_ms)
    finally:
        yappi.stop()
    stats: Any = yappi.get_func_stats()
    for column in ("ttot", "tsub"):
        print(f"\n-- top {args.top} by {column} (CPU s, all threads) --")
        stats.sort(column, "desc")
        for row in list(stats)[: args.top]:
            where = f"{Path(row.module).name}:{row.lineno}"
            print(f"{row.ttot:8.3f} {row.tsub:8.3f} {row.ncall:9d}  {row.name}  {where}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", choices=["fanout", "mixed"], default="fanout")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-profile", action="store_true", help="time only (no profiler overhead)")
    parser.add_argument(
        "--phases", action="store_true", help="mixed: CPU by phase and by thread, no profiler"
    )
    args = parser.parse_args()
    if args.phases and args.bench != "mixed":
        parser.error("--phases measures the mixed bench (--bench mixed)")
    with Azurite() as azurite, EmulatorProcess() as emulator:
        use_emulator(emulator.env)
        os.environ.update(SETTINGS, AzureWebJobsStorage=azurite.connection_string)
        run(emulator, args.bench, 1, args.latency_ms)  # warm: imports, tables, tokens
        load = os.getloadavg()[0]
        started = time.monotonic()
        if args.phases:
            targets, wall, cpu, status = by_phase(emulator, args)
        elif args.no_profile:
            targets, wall, cpu, status = run(emulator, args.bench, args.n, args.latency_ms)
        else:
            targets, wall, cpu, status = profiled(emulator, args)
        print(
            f"\n{args.bench} N={args.n}: {targets} targets, wall {wall:.1f} s, CPU {cpu:.2f} s, "
            f"{1000 * cpu / targets:.2f} ms/target, status {status}; load {load:.1f} -> "
            f"{os.getloadavg()[0]:.1f}; {platform.machine()} {os.cpu_count()} cores, Python "
            f"{platform.python_version()} ({time.monotonic() - started:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
