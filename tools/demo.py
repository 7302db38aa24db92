"""`make demo`: the whole system on the local stack, as production runs it.

Starts Azurite and the emulator with the sample estate (emulator/scenarios/sample.json),
fires the sample Key Vault event through the Event Grid function, lets the queue function
(run by the local host stand-in) do the work, and prints the plan, the run and every
resource before and after. Exits non-zero if anything did not converge.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azure.storage.blob import BlobServiceClient  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from devstack.azurite import Azurite  # noqa: E402
from devstack.functions_host import QueueDispatcher, QueueHostSettings, deliver_event_grid, http_request  # noqa: E402
from emulator import EmulatorProcess, use_emulator  # noqa: E402
from rotation.doors.cli import main as rotation_cli  # noqa: E402

SAMPLES = REPO / "tests" / "data" / "samples"
SCENARIO = REPO / "emulator" / "scenarios" / "sample.json"
SUBSCRIPTIONS = "00000000-0000-0000-0000-000000000001,00000000-0000-0000-0000-000000000002"
console = Console(width=max(120, Console().width))


def estate(admin: Any) -> Table:
    """Every resource in the emulator with the key version it uses."""
    state = admin.state()
    table = Table(header_style="bold", title_justify="left")
    for column in ("resource", "kind", "key", "version"):
        table.add_column(column)

    def add(resource_id: str, kind: str, key_url: str | None) -> None:
        if not key_url:
            table.add_row(resource_id.rsplit("/", 1)[1], kind, "[dim]no CMK[/]", "")
            return
        parts = key_url.split("/")
        version = parts[5] if len(parts) > 5 else "[green]versionless[/]"
        table.add_row(resource_id.rsplit("/", 1)[1], kind, parts[4], version)

    for registry in state["registries"]:
        add(registry["id"], "registry", registry["keyId"])
    for account in state["batchAccounts"]:
        add(account["id"], "batch", account["keyId"])
    for group in state["containerGroups"]:
        add(
            group["id"],
            "containergroup",
            f"{group['vaultBaseUrl']}/keys/{group['keyName']}/{group['keyVersion']}",
        )
    return table


def run_table(run: dict[str, Any]) -> Table:
    table = Table(header_style="bold")
    for column in ("target", "action", "outcome", "from", "to", "why"):
        table.add_column(column, overflow="fold")
    for step in run["steps"]:
        moved = step.get("action") == "update"
        table.add_row(
            step["target"].rsplit("/", 1)[1],
            step["action"],
            step["outcome"],
            (step.get("fromVersion") or "versionless")[:8],
            (step.get("toVersion") or "")[:8] if moved else "",
            step.get("error") or step.get("message", ""),
        )
    return table


def converged(run: dict[str, Any]) -> bool:
    return run["status"] in ("succeeded", "needs-attention") and all(
        step["outcome"] == "verified" for step in run["steps"] if step["action"] == "update"
    )


def dispatch(connection_string: str, function: Any, **overrides: Any) -> Any:
    """Run queued requests as the Functions host would (host.json semantics)."""
    settings = QueueHostSettings.from_host_json(REPO / "host.json")
    settings = QueueHostSettings(**{**settings.__dict__, **overrides})
    dispatcher = QueueDispatcher(connection_string, "rotation-requests", function, settings)
    try:
        return dispatcher.run_until_idle(timeout=90)
    finally:
        dispatcher.close()


def main() -> int:
    started = time.monotonic()
    console.print(Rule("CMK rotation demo: local stack"))
    with Azurite() as azurite, EmulatorProcess(SCENARIO) as emulator:
        emulator.admin.configure(lroSeconds=1, retryAfter=1)  # ARM-like: writes take a second
        use_emulator(emulator.env)
        os.environ.update(
            {
                "AzureWebJobsStorage": azurite.connection_string,
                "ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.net",
                "ROTATION_SUBSCRIPTIONS": SUBSCRIPTIONS,
            }
        )
        import function_app  # after the settings: the app reads them on first use
        from rotation.doors.cli import print_plan, print_records
        from rotation.model.ids import parse_key_id
        from rotation.service import service_for_environment
        from rotation.storage.audit import verify

        service = service_for_environment()

        def show_run(run_id: str) -> dict[str, Any]:
            response = function_app.get_rotation(
                http_request("GET", f"/api/rotations/{run_id}", route_params={"runId": run_id})
            )
            run = json.loads(response.get_body())
            created = f", created {run['createdVersion']}" if run.get("createdVersion") else ""
            console.print(
                f"run {run_id}: status [bold]{run['status']}[/], desired {run['desiredVersion']}{created}"
            )
            console.print(run_table(run))
            return run

        def last_run() -> str:
            return next(r["runId"] for r in service.audit.query(top=50)[0] if r["kind"] == "run-finished")

        console.print(f"Azurite on ports {azurite.ports}; emulator at {emulator.env['EMULATOR_ADMIN_URL']}\n")
        console.print(Rule("1. The estate before"))
        console.print(estate(emulator.admin))

        sample = (SAMPLES / "key-new-version.eventgrid.json").read_text()
        key_id = json.loads(sample)[0]["data"]["Id"]
        console.print(Rule("2. What rotating acr-cmk would do (POST /api/rotations/plan)"))
        print_plan(service.reconciler.plan(parse_key_id(key_id).versionless()), console)

        console.print(
            Rule("3. Key Vault publishes KeyNewVersionCreated -> on_key_event -> queue -> run_rotation")
        )
        outcomes = deliver_event_grid(function_app.on_key_event, sample)
        console.print(
            f"event {json.loads(sample)[0]['id']} delivered: "
            f"{'acknowledged' if outcomes == [None] else outcomes}"
        )
        stats = dispatch(azurite.connection_string, function_app.run_rotation)
        console.print(f"run_rotation ran {len(stats.invocations)} message(s), {len(stats.failures)} failed")
        runs = [show_run(last_run())]

        console.print(Rule("4. KeyNearExpiry for batch-cmk (CloudEvents): one new version, rolled out"))
        near = (SAMPLES / "key-near-expiry.cloudevent.json").read_text()
        deliver_event_grid(function_app.on_key_event, near)
        dispatch(azurite.connection_string, function_app.run_rotation)
        near_run = last_run()
        runs.append(show_run(near_run))
        console.print(f"the audit trail of run {near_run} (hash-chained, anchored in audit-anchors):")
        anchor = service.audit.latest_anchor(near_run)
        print_records(service.audit.run_records(near_run, anchor["partition"]), console)

        console.print(Rule("5. A failure: ARM refuses contosoedge, the request ends in the poison queue"))
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.keys import KeyClient

        vault = KeyClient("https://contoso-cmk.vault.azure.net", DefaultAzureCredential())
        fresh = vault.create_rsa_key("acr-cmk", size=3072, key_operations=["wrapKey", "unwrapKey"])
        console.print(f"someone creates a new acr-cmk version in Key Vault: {fresh.properties.version}")
        emulator.admin.add_fault(method="PATCH", pathRegex="registries/contosoedge$", status=403)
        event = json.loads(sample)
        event[0].update(id="7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
        event[0]["data"].update(Id=fresh.id, Version=fresh.properties.version)
        deliver_event_grid(function_app.on_key_event, event)
        stats = dispatch(
            azurite.connection_string, function_app.run_rotation, visibility_timeout=0, max_dequeue_count=2
        )
        console.print(
            f"{len(stats.invocations)} attempts, {len(stats.poisoned)} message moved to the poison queue"
        )
        blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
        blobs.get_blob_client(
            "eventgrid-deadletters", "CMK-ROTATION/2026/11/20/21/3c4d5e6f-demo.json"
        ).upload_blob((SAMPLES / "deadletter-blob.eventgrid.json").read_bytes(), overwrite=True)
        console.print("and an event Event Grid could not deliver for a day lands as a dead-letter blob")

        console.print(Rule("6. On call: rotation deadletters list"))
        cli = CliRunner(env={"COLUMNS": str(console.width)})
        console.print(cli.invoke(rotation_cli, ["deadletters", "list"]).output)
        console.print(Rule("7. Fix the cause (role restored), then: rotation replay --yes"))
        emulator.admin.clear_faults()
        replayed = cli.invoke(rotation_cli, ["-o", "json", "replay", "--yes"])
        for outcome in json.loads(replayed.output):
            console.print(
                f"{outcome['action']}: {outcome['source']} {outcome['eventId']} -> run {outcome['runId']} "
                f"{outcome['status']}"
            )
            runs.append(service.runs.get(outcome["runId"]))
        again = json.loads(cli.invoke(rotation_cli, ["-o", "json", "replay", "--yes"]).output)
        console.print(f"a second replay: {sorted({o['action'] for o in again})}")

        console.print(Rule("8. The estate after"))
        console.print(estate(emulator.admin))
        checked, findings = verify(service.audit)
        console.print(f"audit verify: {checked} runs checked, {len(findings)} problems")
        calls = emulator.admin.calls()
        writes = [c for c in calls["calls"] if c["method"] in ("PATCH", "PUT", "DELETE", "POST")]
        console.print(
            f"{calls['total']} calls to Key Vault and ARM, {len(writes)} writes; "
            f"demo took {time.monotonic() - started:.1f}s"
        )

        ok = all(converged(run) for run in runs) and not findings
        console.print(Rule("[bold green]converged[/]" if ok else "[bold red]did not converge[/]"))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
