"""Mixed-kind fan-out: one key rotated into N consumers spread over every consumer kind.

The estate cycles through registries, Batch accounts, Log Analytics and Data Explorer clusters
(long-running PATCH), Event Hubs and Service Bus namespaces (synchronous PATCH), and adds one
Cosmos DB account and one AKS cluster per 10 consumers (never written: auto-rotating and
manual-required). Every Key Vault and ARM call gets the emulator's latency; long-running writes
take 1 s (Retry-After: 1). Reports, for each N, the wall time against the ideal: every
target's step time (each kind's, measured with one target of each kind) packed perfectly over
the workers, sum / concurrency; and per kind the writes, resource reads and LRO polls per target.

    .venv/bin/python bench/mixed_kinds.py [--sizes 60 300] [--latency-ms 50] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devstack.azurite import Azurite  # noqa: E402
from emulator import EmulatorProcess, use_emulator  # noqa: E402
from tests import scenarios as s  # noqa: E402

OLD, NEW = s.vid("old"), s.vid("new")
PINNED = s.key_id("acr-cmk", OLD)
WRITTEN = ("registry", "batch", "loganalytics", "kusto", "eventhub", "servicebus")
ENTRIES = {
    "loganalytics": "logAnalyticsClusters",
    "kusto": "kustoClusters",
    "eventhub": "eventHubNamespaces",
    "servicebus": "serviceBusNamespaces",
}
NAMESPACES = {  # each kind's resource provider, to count its calls
    "registry": "Microsoft.ContainerRegistry",
    "batch": "Microsoft.Batch",
    "loganalytics": "Microsoft.OperationalInsights",
    "kusto": "Microsoft.Kusto",
    "eventhub": "Microsoft.EventHub",
    "servicebus": "Microsoft.ServiceBus",
}


def estate(n: int, kinds: tuple[str, ...] = WRITTEN) -> dict[str, Any]:
    base = s.scenario(
        {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
        registries=[
            s.registry(f"reg{i:04d}", PINNED) for i in range(n) if kinds[i % len(kinds)] == "registry"
        ],
        batch_accounts=[
            s.batch(f"batch{i:04d}", PINNED) for i in range(n) if kinds[i % len(kinds)] == "batch"
        ],
    )
    for i in range(n):
        entry = ENTRIES.get(kinds[i % len(kinds)])
        if entry:
            s.with_keyed(base, (entry, s.keyed(entry, f"c{i:04d}", PINNED)))
    for i in range(n // 10):
        s.with_keyed(
            base,
            ("cosmosAccounts", s.keyed("cosmosAccounts", f"cosmos{i:03d}", s.key_id("acr-cmk"))),
            ("managedClusters", s.keyed("managedClusters", f"aks{i:03d}", PINNED)),
        )
    return base


def run_once(emulator: EmulatorProcess, scenario: dict[str, Any], latency_ms: int) -> dict[str, Any]:
    from rotation.model.ids import parse_key_id
    from rotation.service import forget_services, service_for_environment
    from rotation.storage.queue import new_request

    admin = emulator.admin
    admin.reset(scenario)
    admin.configure(lroSeconds=1, retryAfter=1, armPageSize=100)
    if latency_ms:
        admin.add_fault(latencyMs=latency_ms)
    forget_services()
    service = service_for_environment()
    admin.clear_calls()
    started = time.monotonic()
    result = service.reconciler.run(new_request(parse_key_id(s.key_id("acr-cmk")), "cli", "bench"))
    wall = time.monotonic() - started
    arm = [c for c in admin.calls()["calls"] if c["host"] == "management.azure.com"]
    per_kind: dict[str, Counter[str]] = {kind: Counter() for kind in WRITTEN}
    for call in arm:
        kind = next((k for k, ns in NAMESPACES.items() if f"/providers/{ns}/" in call["path"]), None)
        if kind is None or call["status"] >= 300:
            continue
        if "/operations/" in call["path"] or "/operationStatuses/" in call["path"]:
            per_kind[kind]["poll"] += 1
        elif call["method"] == "PATCH":
            per_kind[kind]["write"] += 1
        elif call["path"].count("/") >= 8:  # a resource, not a list of them
            per_kind[kind]["read"] += 1
    steps = Counter(step.kind for step in result.steps if step.action == "update")
    step_s = {step.kind: step.duration_ms / 1000 for step in result.steps if step.duration_ms}
    return {
        "wall": wall,
        "status": result.status,
        "verified": sum(1 for step in result.steps if step.outcome == "verified"),
        "actions": Counter(step.action for step in result.steps),
        "targets": steps,
        "per_kind": per_kind,
        "step_s": step_s,  # one step's duration per kind (the last one seen)
        "arm_calls": len(arm),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 300])
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with Azurite() as azurite, EmulatorProcess() as emulator:
        use_emulator(emulator.env)
        os.environ.update(
            {
                "AzureWebJobsStorage": azurite.connection_string,
                "ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.net",
                "ROTATION_SUBSCRIPTIONS": s.SUB_A,
                "ROTATION_CONCURRENCY": str(args.concurrency),
                "ROTATION_TIME_BUDGET_SECONDS": os.environ.get("ROTATION_TIME_BUDGET_SECONDS", "3600"),
            }
        )
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(
            f"latency {args.latency_ms} ms per call, LRO 1 s (Retry-After 1), concurrency {args.concurrency}\n"
        )
        # One target of each kind at once: each kind's step time is its unit of work in the ideal.
        alone = run_once(emulator, estate(len(WRITTEN)), args.latency_ms)
        unit = alone["step_s"]
        print("one target of each kind: " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(unit.items())))
        print(f"run {alone['wall']:.2f} s\n")
        print(
            "| N | writable | wall s | ideal s | ratio | verified | manual-required | auto-rotating | status |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        last: dict[str, Any] = {}
        for n in args.sizes:
            r = last = run_once(emulator, estate(n), args.latency_ms)
            writable = sum(r["targets"].values())
            # perfect packing of every step's time over the workers, never less than one step
            work = sum(count * unit.get(kind, 0.0) for kind, count in r["targets"].items())
            ideal = max(work / args.concurrency, max(unit.values()))
            print(
                f"| {n} | {writable} | {r['wall']:.1f} | {ideal:.1f} | {r['wall'] / ideal:.2f} | {r['verified']} | "
                f"{r['actions']['manual-required']} | {r['actions']['auto-rotating']} | {r['status']} |",
                flush=True,
            )
        print(f"\nper kind at N={args.sizes[-1]}: calls per target")
        print("| kind | targets | writes | reads | LRO polls |")
        print("|---|---|---|---|---|")
        for kind in WRITTEN:
            count = last["targets"][kind] or 1
            calls = last["per_kind"][kind]
            print(
                f"| {kind} | {last['targets'][kind]} | {calls['write'] / count:.2f} | {calls['read'] / count:.2f} | "
                f"{calls['poll'] / count:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
