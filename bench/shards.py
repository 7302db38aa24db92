"""A key's run sharded over K Functions instances (issue 27 item 2), through the real queue:
K instance processes (`python -m devstack instance`, what `make serve INSTANCES=K` starts)
take `rotation-requests` with host.json's settings; one request for the key goes on the queue;
the instance that takes it plans once and hands the `update` targets to shard requests by
subscription, which any instance takes, under the parent's lease and fence; the last shard
closes the run. The figure is the time from the enqueue to the run's close, and targets per
second; the product CPU is every instance's (from /proc), so the emulator and Azurite are not
in it.

The estate is N registries over M subscriptions (bench/fanout.py's shape); every Key Vault and
ARM call gets 50 ms of latency, writes take 1 s (Retry-After: 1). The projection to more
instances is arithmetic from what was measured (each instance its own core, as in Azure):
the serial part (enqueue to `run-sharded`: read, discover, plan) plus the shards' CPU spread
over K instances, plus one target's latency; it is marked as estimated.

    .venv/bin/python bench/shards.py [--n 3000] [--subscriptions 30] [--instances 1 2] [--shard-size 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fanout import KEY_ID, estate  # noqa: E402

WARM_UP_S = 6.0  # every instance has imported function_app and is polling by then
TIMEOUT_S = 900.0
TARGET_LATENCY_S = 1.2  # one target at 50 ms a call and a 1 s write (docs/scaling.md)
OPEN = ("queued", "running", "sharded", "waiting")


def subscriptions(count: int) -> list[str]:
    return [f"00000000-0000-0000-0002-{i:012x}" for i in range(count)]


def cpu_seconds(pid: int) -> float:
    """A live process's user + system CPU (clock ticks in /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    instances: int
    wall: float
    serial: float  # enqueue to the parent's `run-sharded` record
    cpu: float
    shards: int
    status: str
    summary: dict[str, int]


def run_once(emulator: Any, n: int, subs: list[str], instances: int, shard_size: int) -> Measured:
    from devstack.instances import Instance
    from rotation.model.ids import parse_key_id
    from rotation.model.request import new_request
    from rotation.run.submit import submit
    from rotation.service import forget_services, service_for_environment
    from tests.conftest import wipe_storage

    admin = emulator.admin
    admin.reset(estate(n, subs))
    admin.configure(lroSeconds=1, retryAfter=1, armPageSize=100)
    admin.add_fault(latencyMs=50)
    env = {
        **os.environ,
        "ROTATION_SUBSCRIPTIONS": ",".join(subs),
        "ROTATION_SHARD_THRESHOLD": str(shard_size),
        "ROTATION_SWEEP_SCHEDULE": "0 0 0 1 1 *",  # the app's timer trigger names it; not due here
    }
    os.environ.update(env)
    wipe_storage(env["AzureWebJobsStorage"])  # no memory of the last run (its writes, leases)
    forget_services()
    service = service_for_environment()
    hosts = [Instance(k, env, quiet=True) for k in range(1, instances + 1)]
    try:
        time.sleep(WARM_UP_S)  # real processes importing: no clock of ours moves them
        before = sum(cpu_seconds(h.process.pid) for h in hosts)
        started = time.monotonic()
        request = submit(
            service.requests_queue, service.runs, new_request(parse_key_id(KEY_ID), "cli", "bench-shards")
        )
        while (status := _status(service, request.request_id)) in (*OPEN, None):
            if any(h.process.poll() is not None for h in hosts):
                raise RuntimeError("an instance process ended during the run")
            if time.monotonic() - started > TIMEOUT_S:
                raise TimeoutError(f"run {request.request_id} still {status} after {TIMEOUT_S:.0f} s")
            time.sleep(0.2)  # polling a run that real processes are doing
        wall = time.monotonic() - started
        cpu = sum(cpu_seconds(h.process.pid) for h in hosts) - before
    finally:
        for host in hosts:
            host.stop()
    run = service.runs.get(request.request_id) or {}
    return Measured(
        instances,
        wall,
        _serial(service, request, started, wall),
        cpu,
        len(run.get("shards") or []),
        str(status),
        run.get("summary") or {},
    )


def _status(service: Any, run_id: str) -> str | None:
    """The run's status; None while storage does not answer (Azurite on a loaded machine)."""
    from azure.core.exceptions import AzureError

    try:
        return service.runs.status(run_id)
    except AzureError:
        return None


def _serial(service: Any, request: Any, started: float, wall: float) -> float:
    """Seconds from the enqueue to the parent's `run-sharded` record (audit record times)."""
    from rotation.model.times import parse_iso

    records, _ = service.audit.query(run=request.request_id, top=200)
    sharded = [r for r in records if r["kind"] == "run-sharded"]
    if not sharded:
        return wall
    return (parse_iso(sharded[0]["time"]) - parse_iso(request.enqueued_at)).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--subscriptions", type=int, default=30)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shard-size", type=int, default=100, help="ROTATION_SHARD_THRESHOLD for the run")
    parser.add_argument(
        "--unsharded", action="store_true", help="also one instance with the threshold above N (no shards)"
    )
    parser.add_argument(
        "--project", type=int, default=10, help="estimate the wall time on this many instances"
    )
    args = parser.parse_args()
    from bench.stack import local_stack

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, Python "
        f"{platform.python_version()}; N={args.n} registries over {args.subscriptions} subscriptions, "
        f"shards of at most {args.shard_size}, 50 ms per call, LRO 1 s\n"
    )
    print(
        "| instances | wall s | targets/s | serial s (plan) | product CPU s | CPU ms/target | shards | status |"
    )
    print("|---|---|---|---|---|---|---|---|")
    subs = subscriptions(args.subscriptions)
    measured = []
    with local_stack() as emulator:
        if args.unsharded:  # the same run in one piece, for what sharding itself costs
            m = run_once(emulator, args.n, subs, 1, args.n)
            print(
                f"| 1, unsharded | {m.wall:.1f} | {args.n / m.wall:.0f} | - | {m.cpu:.1f} | "
                f"{1000 * m.cpu / args.n:.2f} | 0 | {m.status} {m.summary} |",
                flush=True,
            )
        for k in args.instances:
            m = run_once(emulator, args.n, subs, k, args.shard_size)
            measured.append(m)
            print(
                f"| {k} | {m.wall:.1f} | {args.n / m.wall:.0f} | {m.serial:.1f} | {m.cpu:.1f} | "
                f"{1000 * m.cpu / args.n:.2f} | {m.shards} | {m.status} {m.summary} |",
                flush=True,
            )
    base = measured[0]
    if len(measured) > 1:
        print(
            f"\n{measured[1].instances} instances / {base.instances}: {base.wall / measured[1].wall:.2f}x (measured)"
        )
    parallel_cpu = base.cpu * (1 - base.serial / base.wall)  # the shards' share, roughly
    projected = base.serial + parallel_cpu / args.project + TARGET_LATENCY_S
    print(
        f"{args.project} instances: about {projected:.1f} s, {args.n / projected:.0f} targets/s "
        f"(estimated: serial {base.serial:.1f} s + {parallel_cpu:.1f} s of shard CPU / {args.project} "
        f"+ one target's {TARGET_LATENCY_S} s; each instance its own core)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
