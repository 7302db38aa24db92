"""Issue 27 item 1: discovery of N subscriptions (default 1,000) both ways, on the local stack.

Each subscription holds one storage account and one registry on the key. With 50 ms of latency
on every call (`--latency-ms`), the product's discovery (`list_consumers`, as a run, the
inventory and the sweep call it) runs once with ROTATION_DISCOVERY=arm (one paged list per kind
and subscription) and once with resourcegraph (one query per 1,000 subscriptions, paged, for
the kinds read from the resource alone; SQL servers and container groups still listed through
ARM), throttling on (ARM's buckets per subscription; Resource Graph's 15 queries per 5 s).
Prints calls, wall time and consumers found for each.

    .venv/bin/python bench/discovery.py [--subscriptions 1000] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.stack import local_stack  # noqa: E402
from bench.summary import record  # noqa: E402
from emulator import EmulatorProcess  # noqa: E402

VAULT = "contoso-cmk.vault.azure.net"
OLD = "0" * 31 + "1"


def subscription(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def estate(subscriptions: int) -> dict[str, Any]:
    key = f"https://{VAULT}/keys/cmk/{OLD}"
    identity = (
        "/subscriptions/{s}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uai"
    )
    storage, registries, identities = [], [], {}
    for i in range(subscriptions):
        sub = subscription(i)
        uai = identity.format(s=sub)
        identities[uai] = {
            "clientId": f"00000000-0000-4000-9000-{i:012d}",
            "principalId": f"00000000-0000-4000-a000-{i:012d}",
        }
        storage.append(
            {
                "id": f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st{i}",
                "location": "westeurope",
                "keyId": key,
                "encryptionIdentity": uai,
                "identities": [uai],
                "tags": {},
            }
        )
        registries.append(
            {
                "id": f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr{i}",
                "location": "westeurope",
                "keyId": key,
                "encryptionIdentity": uai,
                "identities": [uai],
                "tags": {},
            }
        )
    versions = [{"version": OLD, "enabled": True, "created": "-30d"}]
    return {
        "vaults": {"contoso-cmk": {"recoveryLevel": "Recoverable", "keys": {"cmk": {"versions": versions}}}},
        "identities": identities,
        "registries": registries,
        "batchAccounts": [],
        "containerGroups": [],
        "storageAccounts": storage,
    }


def discover(emulator: EmulatorProcess, mode: str, subscriptions: list[str]) -> dict[str, Any]:
    from rotation.azure.discovery import list_consumers
    from rotation.service import forget_services, service_for_environment

    os.environ["ROTATION_DISCOVERY"] = mode
    forget_services()
    service = service_for_environment()
    emulator.admin.set_throttling(True)  # fresh buckets for each way
    emulator.admin.clear_calls()
    started = time.monotonic()
    found = list_consumers(
        service.clients,
        subscriptions,
        policy=service.reconciler.retry,
        workers=service.settings.concurrency,
        discovery=mode,
    )
    wall = time.monotonic() - started
    calls = [c for c in emulator.admin.calls()["calls"] if c["host"] == "management.azure.com"]
    return {
        "wall": wall,
        "calls": len(calls),
        "graph": sum(1 for c in calls if "resourcegraph" in c["path"].lower()),
        "throttled": sum(1 for c in calls if c["status"] == 429),
        "found": len(found.consumers),
        "errors": len(found.errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    subscriptions = [subscription(i) for i in range(args.subscriptions)]
    with local_stack(ROTATION_SUBSCRIPTIONS=",".join(subscriptions)) as emulator:
        emulator.admin.reset(estate(args.subscriptions))
        if args.latency_ms:
            emulator.admin.add_fault(latencyMs=args.latency_ms)
        print(
            f"discovery of {args.subscriptions} subscriptions ({2 * args.subscriptions} consumers), "
            f"{args.latency_ms} ms per call, throttled; {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}\n"
        )
        print("| ROTATION_DISCOVERY | ARM calls | of them Resource Graph | 429s | wall s | found | errors |")
        print("|---|---|---|---|---|---|---|")
        results = {}
        for mode in ("arm", "resourcegraph"):
            r = results[mode] = discover(emulator, mode, subscriptions)
            print(
                f"| {mode} | {r['calls']} | {r['graph']} | {r['throttled']} | {r['wall']:.1f} | {r['found']} | {r['errors']} |",
                flush=True,
            )
        arm, graph = results["arm"], results["resourcegraph"]
        print(
            f"\nresourcegraph / arm: calls {graph['calls'] / arm['calls']:.3f}, wall {graph['wall'] / arm['wall']:.2f}"
        )
        record(
            f"discovery of {args.subscriptions} subscriptions: Resource Graph wall / ARM lists wall",
            f"{graph['wall']:.1f} s vs {arm['wall']:.1f} s",
            "— (no bucket binds: each subscription's lists draw on its own)",
            graph["wall"] / arm["wall"],
            "< 1",
            f"calls {graph['calls']} vs {arm['calls']} ({graph['calls'] / arm['calls']:.3f}x); "
            f"found {graph['found']} vs {arm['found']}; 429s {graph['throttled']} vs {arm['throttled']}",
        )


if __name__ == "__main__":
    main()
