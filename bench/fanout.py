"""Fan-out benchmark: one key rotated into N registries on the local stack.

For each N: 50 ms of emulator latency on every Key Vault and ARM call, ARM writes that take
1 s (Retry-After: 1), throttling model off. Reports wall time against the ideal
ceil(N / concurrency) x (one target's latency, measured with N = 1), ARM calls per target
(writes, reads of the resource, LRO polls) and the product process's peak RSS. Then N = 1000
in one subscription with ARM's token buckets on: wall time against the floor the write bucket
allows (200 at once, then 10/s) and how many 429s reached the product.

    .venv/bin/python bench/fanout.py [--sizes 10 100 1000] [--throttled 1000]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.stack import fresh_records, local_stack  # noqa: E402
from emulator import AdminClient, EmulatorProcess  # noqa: E402

# The estate is written here in the scenario format (DESIGN.md section 7): bench/ does not
# import tests/.
OLD, NEW = "0" * 31 + "1", "0" * 31 + "2"
SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"
VAULT = "contoso-cmk"
KEY_ID = f"https://{VAULT}.vault.azure.net/keys/acr-cmk"
IDENTITY = (
    f"/subscriptions/{SUB_A}/resourceGroups/rg-identity/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/uai-acr"
)


LIST = re.compile(r"^/subscriptions/[^/]+/providers/[^/]+/[^/]+$", re.IGNORECASE)  # a kind's list


def estate(n: int, subscriptions: list[str]) -> dict[str, Any]:
    registries = [
        {
            "id": f"/subscriptions/{subscriptions[i % len(subscriptions)]}/resourceGroups/rg-{i % 7}"
            f"/providers/Microsoft.ContainerRegistry/registries/reg{i:04d}",
            "location": "westeurope",
            "keyId": f"{KEY_ID}/{OLD}",
            "encryptionIdentity": IDENTITY,
            "identities": [IDENTITY],
            "tags": {},
        }
        for i in range(n)
    ]
    versions = [
        {"version": OLD, "created": "-200d", "exp": "+265d", "enabled": True},
        {"version": NEW, "created": "-1h", "exp": "+265d", "enabled": True},
    ]
    return {
        "vaults": {
            VAULT: {
                "recoveryLevel": "Recoverable",
                "keys": {"acr-cmk": {"kty": "RSA", "versions": versions, "rotationPolicy": None}},
            }
        },
        "registries": registries,
    }


def prepare(admin: AdminClient, scenario: dict[str, Any], *, throttled: bool, latency_ms: int) -> None:
    """The emulator as every run here meets it: `scenario` loaded, writes that take 1 s and say
    Retry-After: 1, `latency_ms` on every call, ARM's token buckets on or off."""
    admin.reset(scenario)
    admin.configure(lroSeconds=1, retryAfter=1, armPageSize=100)
    if latency_ms:
        admin.add_fault(latencyMs=latency_ms)  # every call, no error
    admin.set_throttling(throttled)


def run_once(
    emulator: EmulatorProcess,
    n: int,
    subscriptions: list[str],
    *,
    throttled: bool,
    latency_ms: int,
    scenario: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One key rotated into `scenario` (default: `n` registries over `subscriptions`)."""
    from rotation.model.ids import parse_key_id
    from rotation.model.request import new_request
    from rotation.service import forget_services, service_for_environment

    admin = emulator.admin
    prepare(admin, scenario or estate(n, subscriptions), throttled=throttled, latency_ms=latency_ms)
    os.environ["ROTATION_SUBSCRIPTIONS"] = ",".join(subscriptions)  # discovery lists only these
    fresh_records()  # a fresh estate, and no memory of what an earlier run wrote to it
    forget_services()
    service = service_for_environment()
    admin.clear_calls()
    request = new_request(parse_key_id(KEY_ID), "cli", "bench")
    started, started_at, cpu = time.monotonic(), time.time(), time.process_time()
    result = service.reconciler.run(request)
    wall, cpu = time.monotonic() - started, time.process_time() - cpu
    calls = admin.calls()["calls"]
    arm = [c for c in calls if c["host"] == "management.azure.com"]
    classes = {c_id: _class(c) for c_id, c in enumerate(arm)}
    writes = [c for i, c in enumerate(arm) if classes[i] == "write" and c["status"] < 300]
    reads = [c for i, c in enumerate(arm) if classes[i] == "read" and c["status"] == 200]
    polls = [c for i, c in enumerate(arm) if classes[i] == "poll" and c["status"] == 200]
    refused = Counter(classes[i] for i, c in enumerate(arm) if c["status"] == 429)
    first_write = min((c["time"] for c in arm if c["method"] in {"PATCH", "PUT"}), default=started_at)
    verified = sum(1 for step in result.steps if step.outcome == "verified")
    durations = sorted(step.duration_ms for step in result.steps if step.duration_ms)
    return {
        "n": n,
        "wall": wall,
        "status": result.status,
        "verified": verified,
        "arm_calls": len(arm),
        "writes": len(writes),
        "reads": len(reads),
        "polls": len(polls),
        "lists": sum(1 for i, c in enumerate(arm) if classes[i] == "list" and c["status"] == 200),
        "throttled_429": sum(1 for c in calls if c["status"] == 429),
        "refused": dict(refused),  # 429s by what was refused: write, read, poll, list
        "failed": sum(1 for step in result.steps if step.outcome == "failed"),
        "first_write_s": first_write - started_at,
        "cpu_s": cpu,
        "median_step_ms": durations[len(durations) // 2] if durations else 0,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _class(call: dict[str, Any]) -> str:
    """What an ARM call was for. Poll URLs are registry-scoped (`.../registries/<name>/
    operationStatuses/<id>`), so they are told apart before resource reads."""
    path = call["path"].split("?")[0]
    if "/operationStatuses/" in path or "/operationResults/" in path:
        return "poll"
    if call["method"] in {"PATCH", "PUT", "POST", "DELETE"}:
        return "write"
    if LIST.match(path):
        return "list"
    return "read"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--throttled", type=int, default=1000, help="N for the throttled run (0: skip)")
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    with local_stack(
        ROTATION_SUBSCRIPTIONS=f"{SUB_A},{SUB_B}", ROTATION_CONCURRENCY=str(args.concurrency)
    ) as emulator:
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}"
        )
        print(
            f"latency {args.latency_ms} ms per call, LRO 1 s (Retry-After 1), concurrency {args.concurrency}\n"
        )
        single = run_once(emulator, 1, [SUB_A], throttled=False, latency_ms=args.latency_ms)
        per_target = single["median_step_ms"] / 1000
        print(f"one target alone: step {per_target:.2f} s, run {single['wall']:.2f} s\n")
        print(
            "| N | wall s | ideal s | ratio | verified | writes/target | reads/target | polls/target "
            "| ARM calls/target | peak RSS MB |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for n in args.sizes:
            r = run_once(emulator, n, [SUB_A, SUB_B], throttled=False, latency_ms=args.latency_ms)
            ideal = math.ceil(n / args.concurrency) * per_target
            print(
                f"| {n} | {r['wall']:.1f} | {ideal:.1f} | {r['wall'] / ideal:.2f} | {r['verified']} | "
                f"{r['writes'] / n:.2f} | {r['reads'] / n:.2f} | {r['polls'] / n:.2f} | "
                f"{r['arm_calls'] / n:.2f} | {r['max_rss_mb']:.0f} |",
                flush=True,
            )
        if args.throttled:
            n = args.throttled
            r = run_once(emulator, n, [SUB_A], throttled=True, latency_ms=args.latency_ms)
            floor = max(0, n - 200) / 10  # the write bucket: 200 at once, then 10 a second
            print(
                f"\nthrottling model on, N={n} in one subscription: wall {r['wall']:.1f} s, floor {floor:.0f} s "
                f"(ratio {r['wall'] / floor:.2f}), {r['throttled_429']} answers were 429, "
                f"{r['verified']} verified, status {r['status']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
