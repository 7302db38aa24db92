"""Mixed-kind fan-out: one key rotated into N consumers of every built-in kind, over M
subscriptions, optionally with ARM's throttling model on.

The estate cycles through the written kinds: registries, Batch accounts, Log Analytics and
Data Explorer clusters, Disk Encryption Sets and SQL servers (long-running writes), storage
accounts, Event Hubs and Service Bus namespaces (synchronous PATCH); and adds, per 10
consumers, one Cosmos DB account (auto-rotating), one AKS cluster (manual-required) and one
container group (redeploy-required under the `report` policy): every kind is listed and
planned, the written ones are written. Consumers are spread round-robin over the
subscriptions. Every Key Vault and ARM call gets the emulator's latency; long-running writes
take 1 s (Retry-After: 1).

For each N it reports the wall time against issue 15's ideal, max(ARM floor, CPU floor): the
ARM floor is the slowest kind's target alone (measured with one target of each) plus, with
throttling on, what the slowest subscription's buckets need past their burst (writes 200 then
10 a second, reads 250 then 25 a second, from the calls the run made); the CPU floor is the CPU
the product spent, as if it had done nothing but compute. Also: verified share, the
product's CPU per consumer (its own process only), when the first write went out, 429s by
what they refused, and per kind the writes, resource reads and polls per target.

    .venv/bin/python bench/mixed_kinds.py [--sizes 60 300] [--subscriptions 1] [--throttled]
    make bench-10k     # N = 10,000 over 50 subscriptions, throttling on; stops by itself
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fanout import prepare  # noqa: E402
from bench.stack import fresh_records, local_stack  # noqa: E402
from bench.summary import record  # noqa: E402
from emulator import EmulatorProcess  # noqa: E402
from tests import scenarios as s  # noqa: E402

OLD = s.vid("old")
PINNED = s.key_id("acr-cmk", OLD)
Build = Callable[[int, str], tuple[str, dict[str, Any]]]  # (index, subscription) -> (entry, spec)


def _keyed(entry: str, prefix: str) -> Build:
    return lambda i, sub: (entry, s.keyed(entry, f"{prefix}{i:05d}", PINNED, sub=sub))


WRITTEN: dict[str, Build] = {
    "registry": lambda i, sub: ("registries", s.registry(f"reg{i:05d}", PINNED, sub=sub)),
    "batch": lambda i, sub: ("batchAccounts", s.batch(f"batch{i:05d}", PINNED, sub=sub)),
    "storage": lambda i, sub: ("storageAccounts", s.storage(f"st{i:05d}", PINNED, sub=sub)),
    "diskencryptionset": lambda i, sub: (
        "diskEncryptionSets",
        s.encryption_set(f"des{i:05d}", PINNED, sub=sub),
    ),
    "sqlserver": lambda i, sub: ("sqlServers", s.sql_server(f"sql{i:05d}", PINNED, sub=sub)),
    "loganalytics": _keyed("logAnalyticsClusters", "la"),
    "kusto": _keyed("kustoClusters", "adx"),
    "eventhub": _keyed("eventHubNamespaces", "eh"),
    "servicebus": _keyed("serviceBusNamespaces", "sb"),
}
NEVER_WRITTEN: tuple[Build, ...] = (
    lambda i, sub: (
        "cosmosAccounts",
        s.keyed("cosmosAccounts", f"cosmos{i:05d}", s.key_id("acr-cmk"), sub=sub),
    ),
    _keyed("managedClusters", "aks"),
    lambda i, sub: ("containerGroups", s.group(f"aci{i:05d}", "acr-cmk", OLD, sub=sub)),
)
PROVIDERS = {  # each written kind's resource provider, to count its calls
    "Microsoft.ContainerRegistry": "registry",
    "Microsoft.Batch": "batch",
    "Microsoft.Storage": "storage",
    "Microsoft.Compute": "diskencryptionset",
    "Microsoft.Sql": "sqlserver",
    "Microsoft.OperationalInsights": "loganalytics",
    "Microsoft.Kusto": "kusto",
    "Microsoft.EventHub": "eventhub",
    "Microsoft.ServiceBus": "servicebus",
}


def subscriptions(count: int) -> list[str]:
    return [f"00000000-0000-0000-0001-{i:012x}" for i in range(count)]


def estate(n: int, subs: list[str]) -> dict[str, Any]:
    base = s.scenario({"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))})
    kinds = list(WRITTEN.values())
    for i in range(n):
        s.with_keyed(base, kinds[i % len(kinds)](i, subs[i % len(subs)]))
    for i in range(n // 10):
        for build in NEVER_WRITTEN:
            s.with_keyed(base, build(i, subs[i % len(subs)]))
    return base


# A status link's last-but-one segment: `operations`, `operationStatuses`, App Configuration's
# `operationsStatus`, the databases' `azureAsyncOperation` and SQL's per-operation ones
# (`serverKeyAzureAsyncOperation`, `…OperationResults`).
STATUS_LINK = re.compile(
    r"/(?:operations|operationstatuses|operationsstatus|[a-z]*azureasyncoperation|[a-z]*operationresults)/",
    re.IGNORECASE,
)


def classify(call: dict[str, Any]) -> tuple[str | None, str]:
    """(kind, what the call was): poll URLs are resource-scoped or location-scoped, so they are
    told apart first; a read is a GET of one resource (or a sub-resource), not of a list."""
    path = call["path"].split("?")[0]
    kind = next((k for p, k in PROVIDERS.items() if f"/providers/{p}/" in path), None)
    if STATUS_LINK.search(path):
        return kind, "poll"
    if call["method"] in {"PATCH", "PUT", "POST", "DELETE"}:
        return kind, "write"
    return kind, "read" if path.count("/") >= 8 else "list"


def run_once(
    emulator: EmulatorProcess,
    scenario: dict[str, Any],
    subs: list[str],
    latency_ms: int,
    throttled: bool,
    before_run: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """One run of the estate; `cpu` is the process's CPU over `reconciler.run` alone (the
    estate's preparation and the call log's reading are outside it). `before_run`: called
    just before, after the bench's own preparation (bench/phases.py resets there)."""
    from rotation.model.ids import parse_key_id
    from rotation.model.request import new_request
    from rotation.service import forget_services, service_for_environment

    admin = emulator.admin
    prepare(admin, scenario, throttled=throttled, latency_ms=latency_ms)
    os.environ["ROTATION_SUBSCRIPTIONS"] = ",".join(subs)
    fresh_records()  # else what the last run wrote reads as reverted by this run's reset estate
    forget_services()
    service = service_for_environment()
    admin.clear_calls()
    if before_run is not None:
        before_run()
    started, started_at, cpu = time.monotonic(), time.time(), time.process_time()
    result = service.reconciler.run(new_request(parse_key_id(s.key_id("acr-cmk")), "cli", "bench"))
    wall, cpu = time.monotonic() - started, time.process_time() - cpu
    arm = [c for c in admin.calls()["calls"] if c["host"] == "management.azure.com"]
    per_kind: dict[str, Counter[str]] = {kind: Counter() for kind in WRITTEN}
    per_subscription: dict[str, Counter[str]] = {}
    refused: Counter[str] = Counter()
    for call in arm:
        kind, what = classify(call)
        if call["status"] == 429:
            refused[what] += 1
            continue
        bucket = "write" if what == "write" else "read"  # ARM's buckets: lists and polls are reads
        per_subscription.setdefault(call["path"].split("/")[2], Counter())[bucket] += 1
        if kind is not None and call["status"] < 300:
            per_kind[kind][what] += 1
    first_write = min((c["time"] for c in arm if classify(c)[1] == "write"), default=started_at)
    return {
        "wall": wall,
        "cpu": cpu,
        "status": result.status,
        "steps": len(result.steps),
        "verified": sum(1 for step in result.steps if step.outcome == "verified"),
        "failed": sum(1 for step in result.steps if step.outcome == "failed"),
        "actions": Counter(step.action for step in result.steps),
        "targets": Counter(step.kind for step in result.steps if step.action == "update"),
        "per_kind": per_kind,
        "per_subscription": per_subscription,
        "refused": refused,
        "first_write_s": first_write - started_at,
        "step_s": {step.kind: step.duration_ms / 1000 for step in result.steps if step.duration_ms},
    }


def bucket_floor(calls: dict[str, Counter[str]]) -> float:
    """The slowest subscription's buckets: what its writes (200 at once, then 10 a second) and
    reads (250, then 25 a second; lists and polls included) need past their burst."""
    return max(
        (max(max(0, c["write"] - 200) / 10, max(0, c["read"] - 250) / 25) for c in calls.values()),
        default=0.0,
    )


def report(n: int, r: dict[str, Any], unit: dict[str, float], args: argparse.Namespace) -> None:
    """The ideal is issue 15's: max(ARM floor, the product's own CPU floor). The ARM floor is
    the slowest kind's target alone plus the slowest subscription's bucket floor (throttling on);
    the CPU floor is the CPU the product spent (one process: about one core under the GIL)."""
    writable = sum(r["targets"].values())
    arm_floor = max(unit.values()) + (bucket_floor(r["per_subscription"]) if args.throttled else 0.0)
    ideal = max(arm_floor, r["cpu"])
    record(
        f"N={n} mixed kinds over {args.subscriptions} subscriptions{', throttled' if args.throttled else ''}: wall / ARM floor",
        f"{r['wall']:.1f} s",
        f"{arm_floor:.1f} s (slowest kind alone + buckets)",
        r["wall"] / arm_floor,
        "issue 27: 15-25x measured",
        f"CPU floor {r['cpu']:.1f} s (wall / max(floors) {r['wall'] / ideal:.2f}); verified {r['verified']}/{writable}",
        show=False,  # its own table follows
    )
    print(
        f"| {n} | {r['steps']} | {writable} | {r['wall']:.1f} | {arm_floor:.1f} | {r['cpu']:.1f} | "
        f"{r['wall'] / ideal:.2f} | {r['verified']}/{writable} | {r['failed']} | "
        f"{1000 * r['cpu'] / max(1, r['steps']):.1f} | {r['first_write_s']:.1f} | {dict(r['refused'])} | "
        f"{r['status']} |",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 300])
    parser.add_argument("--subscriptions", type=int, default=1)
    parser.add_argument("--throttled", action="store_true", help="ARM's token buckets on")
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--concurrency", default="auto", help="ROTATION_CONCURRENCY: auto or a width")
    args = parser.parse_args()
    subs = subscriptions(args.subscriptions)
    with local_stack(ROTATION_CONCURRENCY=str(args.concurrency)) as emulator:
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, Python "
            f"{platform.python_version()}; latency {args.latency_ms} ms per call, LRO 1 s (Retry-After 1), "
            f"concurrency {args.concurrency}, {args.subscriptions} subscription(s), throttling "
            f"{'on' if args.throttled else 'off'}\n"
        )
        # One target of each written kind at once: each kind's step time is its unit of work.
        alone = run_once(emulator, estate(len(WRITTEN), subs[:1]), subs[:1], args.latency_ms, False)
        unit = alone["step_s"]
        print(
            "one target of each kind: " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(unit.items())) + "\n"
        )
        print(
            "| N | consumers | written | wall s | ARM floor s | CPU floor s | wall / max(floors) | verified "
            "| failed | CPU ms/consumer | first write s | 429s | status |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        last: dict[str, Any] = {}
        for n in args.sizes:
            last = run_once(emulator, estate(n, subs), subs, args.latency_ms, args.throttled)
            report(n, last, unit, args)
        print(f"\nper kind at N={args.sizes[-1]}: calls per target (actions {dict(last['actions'])})")
        print("| kind | targets | writes | reads | polls |\n|---|---|---|---|---|")
        for kind in WRITTEN:
            count, calls = last["targets"][kind], last["per_kind"][kind]
            each = max(1, count)
            print(
                f"| {kind} | {count} | {calls['write'] / each:.2f} | {calls['read'] / each:.2f} | "
                f"{calls['poll'] / each:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
