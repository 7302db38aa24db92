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

from emulator import EmulatorProcess  # noqa: E402
from emulator.azurite import Azurite  # noqa: E402
from emulator.functions_host import QueueDispatcher, QueueHostSettings, deliver_event_grid, http_request  # noqa: E402

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


def main() -> int:
    started = time.monotonic()
    console.print(Rule("CMK rotation demo: local stack"))
    with Azurite() as azurite, EmulatorProcess(SCENARIO) as emulator:
        emulator.admin.configure(lroSeconds=1, retryAfter=1)  # ARM-like: writes take a second
        os.environ.update(emulator.env)
        os.environ.update(
            {
                "AzureWebJobsStorage": azurite.connection_string,
                "ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.net",
                "ROTATION_SUBSCRIPTIONS": SUBSCRIPTIONS,
            }
        )
        import function_app  # after the settings: the app reads them on first use
        from rotation.cli import print_plan
        from rotation.keyids import parse_key_id
        from rotation.service import service_for_environment

        service = service_for_environment()
        console.print(f"Azurite on ports {azurite.ports}; emulator at {emulator.env['EMULATOR_ADMIN_URL']}\n")
        console.print(Rule("1. The estate before"))
        console.print(estate(emulator.admin))

        sample = (SAMPLES / "key-new-version.eventgrid.json").read_text()
        key_id = json.loads(sample)[0]["data"]["Id"]
        console.print(Rule("2. What rotating acr-cmk would do (POST /api/rotations/plan)"))
        print_plan(service.reconciler.plan(parse_key_id(key_id).versionless()), console)

        console.print(Rule("3. Key Vault publishes KeyNewVersionCreated -> on_key_event -> queue"))
        outcomes = deliver_event_grid(function_app.on_key_event, sample)
        console.print(
            f"event {json.loads(sample)[0]['id']} delivered: "
            f"{'acknowledged' if outcomes == [None] else outcomes}"
        )
        settings = QueueHostSettings.from_host_json(REPO / "host.json")
        dispatcher = QueueDispatcher(
            azurite.connection_string, "rotation-requests", function_app.run_rotation, settings
        )
        stats = dispatcher.run_until_idle(timeout=90)
        dispatcher.close()
        [invocation] = stats.invocations
        console.print(
            f"run_rotation ran message {invocation.message_id} "
            f"({'ok' if invocation.error is None else invocation.error})"
        )

        console.print(Rule("4. The run (GET /api/rotations/{runId})"))
        run_id = next(r["runId"] for r in service.audit.query(top=20)[0] if r["kind"] == "run-finished")
        response = function_app.get_rotation(
            http_request("GET", f"/api/rotations/{run_id}", route_params={"runId": run_id})
        )
        run = json.loads(response.get_body())
        console.print(f"run {run_id}: status [bold]{run['status']}[/], desired {run['desiredVersion']}")
        console.print(run_table(run))

        console.print(Rule("5. The estate after"))
        console.print(estate(emulator.admin))
        calls = emulator.admin.calls()
        writes = [c for c in calls["calls"] if c["method"] in ("PATCH", "PUT", "DELETE")]
        console.print(
            f"{calls['total']} calls to Key Vault and ARM, {len(writes)} writes; "
            f"demo took {time.monotonic() - started:.1f}s"
        )

        ok = converged(run)
        console.print(Rule("[bold green]converged[/]" if ok else "[bold red]did not converge[/]"))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
