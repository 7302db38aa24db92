"""A worker process's memory over consecutive runs: N runs of one key through the queue
trigger's entry point (`function_app.run_rotation`, as the Functions host calls it), in one
process. Before each run the key gets a new version (Key Vault's rotate, through the product's
own key client), so every run plans, writes and audits the whole mixed-kind estate again, as
a long-lived instance rolls one key after another.

glibc reads MALLOC_ARENA_MAX when a process starts: the bench runs itself again with the value
the Function App deploys (infra/modules/function-app.bicep; `--arenas default`: glibc's own, up
to 8 arenas a core, with which the resident set grows run after run). Prints the process's resident set at
the start of each run and the spread past the first few runs (issue 27: flat within 10 %).

    .venv/bin/python bench/rss.py [--runs 20] [--n 200] [--subscriptions 2] [--warm 3] [--arenas 2|default]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import mixed_kinds  # noqa: E402
from bench.stack import local_stack  # noqa: E402
from tests import scenarios as s  # noqa: E402

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
DEPLOYED_ARENAS = "2"  # the Function App's MALLOC_ARENA_MAX app setting


def rss_mb() -> float:
    """The resident set now (not the peak: ru_maxrss never falls)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_MB


def one_run(index: int) -> str:
    import azure.functions as func

    import function_app
    from rotation.model.ids import parse_key_id
    from rotation.model.request import new_request
    from rotation.service import service_for_environment
    from rotation.storage.queue import encode

    key = parse_key_id(s.key_id("acr-cmk"))
    service_for_environment(ensure_storage=False).clients.keys(key.vault_url).rotate_key(key.name)
    request = new_request(parse_key_id(s.key_id("acr-cmk")), "cli", "bench-rss")
    message = func.QueueMessage(id=f"rss-{index}", body=encode(request).encode())
    try:
        function_app.run_rotation(message)
        return "ok"
    except Exception as exc:  # noqa: BLE001 - a failed run still counts; its class is printed
        return type(exc).__name__


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--n", type=int, default=200, help="written consumers per run")
    parser.add_argument("--subscriptions", type=int, default=2)
    parser.add_argument("--warm", type=int, default=3, help="runs before the flatness is judged")
    parser.add_argument("--arenas", default=DEPLOYED_ARENAS, help="MALLOC_ARENA_MAX, or default")
    args = parser.parse_args()
    wanted = None if args.arenas == "default" else args.arenas
    if os.environ.get("MALLOC_ARENA_MAX") != wanted:  # glibc reads it at start only
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
        os.execve(  # noqa: S606 - this same bench again, its own interpreter and arguments
            sys.executable,
            [sys.executable, *sys.argv],
            env | ({"MALLOC_ARENA_MAX": wanted} if wanted else {}),
        )
    subs = mixed_kinds.subscriptions(args.subscriptions)
    scenario = mixed_kinds.estate(args.n, subs)
    with local_stack(ROTATION_SUBSCRIPTIONS=",".join(subs), ROTATION_CONCURRENCY="16") as emulator:
        emulator.admin.reset(scenario)
        emulator.admin.configure(lroSeconds=1, retryAfter=1, armPageSize=100)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, Python "
            f"{platform.python_version()}; {args.runs} runs of {args.n} written consumers (+{3 * (args.n // 10)} "
            f"never written) through function_app.run_rotation, one process, MALLOC_ARENA_MAX {args.arenas}\n"
        )
        print("| run | RSS at start MB | wall s | outcome |\n|---|---|---|---|")
        starts: list[float] = []
        for index in range(args.runs):
            gc.collect()  # what a run left behind, not garbage a collection would free anyway
            starts.append(rss_mb())
            started = time.monotonic()
            outcome = one_run(index)
            print(
                f"| {index + 1} | {starts[-1]:.1f} | {time.monotonic() - started:.1f} | {outcome} |",
                flush=True,
            )
        judged = starts[args.warm :] or starts
        spread = (max(judged) - min(judged)) / min(judged)
        print(
            f"\nRSS at the start of runs {args.warm + 1}-{args.runs}: {min(judged):.1f}-{max(judged):.1f} MB, "
            f"spread {100 * spread:.1f} % (goal within 10 %); first run started at {starts[0]:.1f} MB; "
            f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB; "
            f"load {os.getloadavg()[0]:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
