"""Mixed-kind fan-out benchmark: one key rotated into N consumers spread evenly over registries,
Batch accounts, storage accounts, Disk Encryption Sets and SQL servers, on the local stack.

Same conditions as bench/fanout.py (50 ms of emulator latency on every call, ARM operations
that take 1 s with Retry-After: 1, throttling model off). For each kind it measures one target
alone, then reports the mixed run's wall time against the ideal (the sum of the targets'
single-target times spread over the workers, never less than the slowest one) and ARM calls per
target by kind, polls included (a SQL server costs two long-running writes and the protector
read; a storage account's PATCH is synchronous, so it has no polls).

    .venv/bin/python bench/mixed_kinds.py [--sizes 25 100 500]
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

OLD = s.vid("old")
PINNED = s.key_id("mix-cmk", OLD)
BUILDERS = {
    "registry": ("registries", lambda i: s.registry(f"reg{i:04d}", PINNED)),
    "batch": ("batch_accounts", lambda i: s.batch(f"batch{i:04d}", PINNED)),
    "storage": ("storage_accounts", lambda i: s.storage(f"st{i:04d}", PINNED)),
    "diskencryptionset": ("encryption_sets", lambda i: s.encryption_set(f"des{i:04d}", PINNED)),
    "sqlserver": ("sql_servers", lambda i: s.sql_server(f"sql{i:04d}", PINNED)),
}
PROVIDER_OF = {
    "Microsoft.ContainerRegistry": "registry",
    "Microsoft.Batch": "batch",
    "Microsoft.Storage": "storage",
    "Microsoft.Compute": "diskencryptionset",
    "Microsoft.Sql": "sqlserver",
}


def estate(counts: dict[str, int]) -> dict[str, Any]:
    sections: dict[str, list[dict[str, Any]]] = {}
    for kind, count in counts.items():
        section, build = BUILDERS[kind]
        sections[section] = [build(i) for i in range(count)]
    key = s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))
    return s.scenario(
        {"mix-cmk": key},
        registries=sections.get("registries", []),
        batch_accounts=sections.get("batch_accounts", []),
        storage_accounts=sections.get("storage_accounts", []),
        encryption_sets=sections.get("encryption_sets", []),
        sql_servers=sections.get("sql_servers", []),
    )


def kind_of_call(path: str) -> str | None:
    for provider, kind in PROVIDER_OF.items():
        if f"/providers/{provider}/" in path:
            return kind
    return None


def run_once(emulator: EmulatorProcess, counts: dict[str, int], latency_ms: int) -> dict[str, Any]:
    from rotation.model.ids import parse_key_id
    from rotation.service import forget_services, service_for_environment
    from rotation.storage.queue import new_request

    admin = emulator.admin
    admin.reset(estate(counts))
    admin.configure(lroSeconds=1, retryAfter=1, armPageSize=100)
    if latency_ms:
        admin.add_fault(latencyMs=latency_ms)
    forget_services()
    service = service_for_environment()
    admin.clear_calls()
    started = time.monotonic()
    result = service.reconciler.run(new_request(parse_key_id(s.key_id("mix-cmk")), "cli", "bench"))
    wall = time.monotonic() - started
    arm = [c for c in admin.calls()["calls"] if c["host"] == "management.azure.com"]
    by_kind = Counter(kind_of_call(c["path"]) for c in arm)
    # Location-scoped operation polls name no resource: count them apart.
    polls = sum(1 for c in arm if "/operations/" in c["path"] or "/operationStatuses/" in c["path"])
    durations = sorted(st.duration_ms for st in result.steps if st.duration_ms)
    return {
        "wall": wall,
        "status": result.status,
        "verified": sum(1 for st in result.steps if st.outcome == "verified"),
        "calls_by_kind": by_kind,
        "polls": polls,
        "median_step_s": durations[len(durations) // 2] / 1000 if durations else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 100, 500])
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
                "ROTATION_TIME_BUDGET_SECONDS": "3600",
            }
        )
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"latency {args.latency_ms} ms per call, LRO 1 s (Retry-After 1), concurrency {args.concurrency}\n"
        )
        single: dict[str, float] = {}
        for kind in BUILDERS:
            single[kind] = run_once(emulator, {kind: 1}, args.latency_ms)["median_step_s"]
        print("one target alone: " + ", ".join(f"{k} {v:.2f} s" for k, v in single.items()) + "\n")
        slowest = max(single.values())
        print("| N | wall s | ideal s | ratio | verified | ARM calls/target by kind | polls |")
        print("|---|---|---|---|---|---|---|")
        for n in args.sizes:
            counts = {
                kind: n // len(BUILDERS) + (1 if i < n % len(BUILDERS) else 0)
                for i, kind in enumerate(BUILDERS)
            }
            r = run_once(emulator, counts, args.latency_ms)
            # Ideal: the work spread perfectly over the workers, and never less than the slowest target.
            work = sum(counts[k] * single[k] for k in BUILDERS)
            ideal = max(slowest, work / args.concurrency)
            per_kind = ", ".join(
                f"{k} {r['calls_by_kind'][k] / counts[k]:.1f}" for k in BUILDERS if counts[k]
            )
            print(
                f"| {n} | {r['wall']:.1f} | {ideal:.1f} | {r['wall'] / ideal:.2f} | {r['verified']} | "
                f"{per_kind} | {r['polls']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
