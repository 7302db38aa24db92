"""How long the CLI takes to print a large plan and run result without a terminal (a pipe, a CI
log): N consumers, most of them already current, a few to update, some AKS clusters whose
`manual-required` message is a long command line. No Azure, no stack: the rendering only.

    .venv/bin/python bench/render.py [--rows 822] [--all]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rotation.model.consumer import Consumer  # noqa: E402
from rotation.model.ids import parse_key_id, parse_resource_id  # noqa: E402
from rotation.model.keystate import KeyState, VersionInfo  # noqa: E402
from rotation.model.results import Plan, PlanStep, RunResult, StepResult  # noqa: E402

VAULT = "https://contoso-cmk.vault.azure.net/keys/platform-cmk"
OLD, NEW = "0a" * 16, "1b" * 16
SUB = "00000000-0000-0000-0000-000000000001"
AKS_MESSAGE = (
    "AKS KMS keys are never written by this system (a whole-cluster update, then every secret "
    "re-encrypted). Run: az aks update --subscription {sub} --resource-group rg-{i} --name aks-{i} "
    "--enable-azure-keyvault-kms --azure-keyvault-kms-key-id {key}/{new}; then az aks get-credentials "
    "--subscription {sub} --resource-group rg-{i} --name aks-{i}; kubectl get secrets --all-namespaces "
    "-o json | kubectl replace -f -. Keep version {old} enabled until the secrets are re-encrypted."
)


def step(i: int) -> PlanStep:
    """Every 40th an update, every 70th an AKS cluster, the rest already current."""
    if i % 70 == 0:
        kind, provider, action = "aks", "Microsoft.ContainerService/managedClusters", "manual-required"
        message = AKS_MESSAGE.format(sub=SUB, i=i, key=VAULT, new=NEW, old=OLD)
    elif i % 40 == 0:
        kind, provider, action, message = (
            "registry",
            "Microsoft.ContainerRegistry/registries",
            "update",
            "behind",
        )
    else:
        kind, provider, action = "registry", "Microsoft.ContainerRegistry/registries", "already-current"
        message = "holds the desired version"
    target = f"/subscriptions/{SUB}/resourceGroups/rg-{i}/providers/{provider}/{kind}-{i:04d}"
    version = OLD if action != "already-current" else NEW
    consumer = Consumer(
        kind, parse_resource_id(target, (provider,)), parse_key_id(f"{VAULT}/{version}"), "westeurope"
    )
    return PlanStep(
        target,
        kind,
        action,
        "kms-whole-cluster-update" if kind == "aks" else action,
        message,
        version,
        NEW,
        consumer,
    )


def plan(rows: int) -> Plan:
    now = datetime.now(UTC)
    versions = (
        VersionInfo(OLD, True, now - timedelta(days=200), None, None),
        VersionInfo(NEW, True, now - timedelta(hours=1), None, None),
    )
    key = parse_key_id(VAULT)
    state = KeyState(key, versions, NEW, versions[1], None, "Recoverable")
    return Plan(key, state, tuple(step(i) for i in range(rows)))


def result_of(found: Plan) -> RunResult:
    result = RunResult("0123456789abcdef", found.key.versionless_id, False, found.desired_version)
    result.steps = [
        StepResult(
            s.target,
            s.kind,
            s.action,
            s.reason,
            s.message,
            s.from_version,
            s.to_version,
            "verified" if s.action == "update" else "skipped",
        )
        for s in found.steps
    ]
    return result


def timed(label: str, print_it: Callable[[], None], rows: int) -> None:
    from rotation.doors.cli import context

    sink = io.StringIO()  # not a terminal, as in a pipe
    saved = context.out.file
    context.out.file = sink
    try:
        started = time.perf_counter()
        print_it()
        elapsed = time.perf_counter() - started
    finally:
        context.out.file = saved
    lines = sink.getvalue().splitlines()
    print(f"{label:<7} {rows} rows: {elapsed:6.2f} s, {len(lines)} lines, widest {max(map(len, lines))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=822)
    parser.add_argument("--all", action="store_true", help="every row, as `--all` prints them")
    args = parser.parse_args()
    from rotation.doors.cli import render

    found = plan(args.rows)
    result = result_of(found)
    timed("plan", lambda: render.print_plan(found, every=args.all), args.rows)
    timed("rotate", lambda: render.print_result(result, every=args.all), args.rows)


if __name__ == "__main__":
    main()
