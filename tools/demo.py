"""`make demo`: the whole system on the local stack (`make serve`'s), driven only from outside.

Starts Azurite, the emulator with the sample estate and the function app hosted like
`func start`; then rotates a key through Key Vault's API and lets everything follow from Key
Vault's own event (Event Grid delivery -> on_key_event -> queue -> run_rotation), runs the sweep
timer, breaks a registry and the app's event delivery, and takes on-call through
`rotation deadletters list` and `rotation replay`. Every call to the app is real HTTP with the
function key. Exits non-zero if anything did not converge; the closing line says which steps a
person still has to do.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from click.testing import CliRunner  # noqa: E402

from devstack.serve import LocalStack, Options  # noqa: E402
from emulator.arm import ARM_HOSTS  # noqa: E402
from rotation.azure.kinds import kind_label  # noqa: E402
from rotation.doors.cli import main as rotation_cli  # noqa: E402
from rotation.doors.cli.grid import add_columns  # noqa: E402
from rotation.doors.cli.render import version_cell  # noqa: E402

SCENARIO = REPO / "emulator" / "scenarios" / "sample.json"
PERSON_NEEDED = {"blocked", "newer-than-desired", "redeploy-required", "manual-required"}
RUNBOOK = "docs/runbook.md section 2 (Fix the cause)"
console = Console(width=max(120, Console().width))


class App:
    """The hosted function app over HTTP, with the function key, as curl would call it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.base, self.key = env["LOCAL_FUNCTIONS_URL"], env["LOCAL_FUNCTION_KEY"]
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - http to the local host on loopback
            self.base + path, data=data, method=method, headers={"x-functions-key": self.key}
        )
        try:
            with self._opener.open(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def estate(state: dict[str, Any]) -> Table:
    """Every consumer of every kind in the emulator, with the key and version it uses."""
    table = Table(header_style="bold", title_justify="left")
    table.add_column("resource", overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("version", no_wrap=True, min_width=11)
    for entries in state.values():
        if not isinstance(entries, list):
            continue  # vaults, pools and identities are dicts: not consumers
        for resource in entries:
            if isinstance(resource, dict) and "id" in resource:
                kind, name = kind_label(resource["id"]).rsplit(" ", 1)
                table.add_row(name, kind, *_key_cells(_key_url(resource)))
    return table


def _key_url(resource: dict[str, Any]) -> str | None:
    """The key a resource uses, whichever way its kind holds it (one id, a list, or parts)."""
    if resource.get("keyIds"):
        return str(resource["keyIds"][0])
    if resource.get("vaultBaseUrl"):
        version = resource.get("keyVersion") or ""
        return f"{resource['vaultBaseUrl']}/keys/{resource.get('keyName')}" + (
            f"/{version}" if version else ""
        )
    # a Databricks workspace: its first entity holding a key
    entities = ("managedServicesKeyId", "managedDiskKeyId", "dbfsKeyId")
    return resource.get("keyId") or next((resource[f] for f in entities if resource.get(f)), None)


def _key_cells(key_url: str | None) -> tuple[str, str]:
    if not key_url:
        return "[dim]no CMK[/]", ""
    parts = key_url.split("/")
    return parts[4], parts[5][:8] if len(parts) > 5 and parts[5] else "[green]versionless[/]"


def steps_table(steps: list[dict[str, Any]]) -> Table:
    """The CLI's step columns: fixed words whole, versions as 8 hex chars or `versionless`."""
    table = add_columns(
        Table(header_style="bold"), "target", "kind", "action", "outcome", "from", "to", "why"
    )
    for step in steps:
        moved = step.get("action") == "update"
        kind, name = kind_label(step["target"]).rsplit(" ", 1)
        table.add_row(
            name,
            kind,
            step["action"],
            step.get("outcome", ""),
            version_cell(step.get("fromVersion")),
            version_cell(step.get("toVersion"), "") if moved else "",
            step.get("error") or step.get("message", ""),
        )
    return table


def converged(run: dict[str, Any]) -> bool:
    return run["status"] in ("succeeded", "needs-attention") and all(
        step["outcome"] == "verified" for step in run["steps"] if step["action"] == "update"
    )


def person_needed(runs: list[dict[str, Any]]) -> list[str]:
    """`<target> <action>` for every step left for a person in the last run of each key."""
    last = {run["keyId"]: run for run in runs}
    return sorted(
        {
            f"{step['target'].rsplit('/', 1)[1]} {step['action']}"
            for run in last.values()
            for step in run["steps"]
            if step["action"] in PERSON_NEEDED
        }
    )


class Demo:
    def __init__(self, stack: LocalStack) -> None:
        self.stack, self.app, self.admin = stack, App(stack.env), stack.emulator.admin
        self.runs: list[dict[str, Any]] = []

    def deliveries(self) -> list[dict[str, Any]]:
        return self.admin._call("GET", "/eventgrid/deliveries")["deliveries"]

    def run_for_event(self, event_id: str) -> dict[str, Any]:
        """The run the app made from one delivered event, once it finished."""

        def finished() -> dict[str, Any] | None:
            status, page = self.app.call("GET", "/api/audit?top=200")
            for record in page["records"] if status == 200 else []:
                if record["kind"] == "run-finished" and record.get("actor") == f"eventgrid:{event_id}":
                    return self.app.call("GET", f"/api/rotations/{record['runId']}")[1]
            return None

        return wait_for(finished, f"the run for event {event_id}")

    def runs_for_key(self, key_id: str) -> list[dict[str, Any]]:
        """Every finished run for a key, oldest first."""
        status, page = self.app.call("GET", f"/api/audit?key={key_id}&top=200")
        ids = [r["runId"] for r in page["records"] if r["kind"] == "run-finished"] if status == 200 else []
        return [self.app.call("GET", f"/api/rotations/{run_id}")[1] for run_id in reversed(ids)]

    def show(self, run: dict[str, Any]) -> dict[str, Any]:
        created = f", created {run['createdVersion']}" if run.get("createdVersion") else ""
        console.print(
            f"run {run['runId']}: status [bold]{run['status']}[/], desired {run['desiredVersion']}{created}"
        )
        console.print(steps_table(run["steps"]))
        self.runs.append(run)
        return run

    def event_for(self, subject: str, version: str, outcome: str = "delivered") -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for delivery in self.deliveries():
                if (
                    delivery["subject"] == subject
                    and delivery["outcome"] == outcome
                    and delivery.get("version") == version
                ):
                    return delivery
            return None

        return wait_for(found, f"{subject} {version} {outcome}")


def vault_client(env: dict[str, str]) -> Any:
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.keys import KeyClient

    return KeyClient("https://contoso-cmk.vault.azure.net", DefaultAzureCredential())


def main() -> int:
    started = time.monotonic()
    logging.basicConfig(level=logging.WARNING)
    console.print(Rule("CMK rotation demo: the local stack (make serve), end to end"))
    # Compressed so the demo takes well under a minute: Event Grid's schedule, the queue's
    # visibility timeout, and the lease a racing request waits out (the sweep's run and Key
    # Vault's announcement of the version it made both want batch-cmk's lease).
    options = Options(
        json.loads(SCENARIO.read_text()),
        port=0,
        eventgrid_time_scale=0.0001,
        visibility_timeout=0,
        extra_settings={"ROTATION_LEASE_SECONDS": "5"},
    )
    stack = LocalStack(options).start()
    try:
        return walk(Demo(stack), started)
    finally:
        stack.stop()


def walk(demo: Demo, started: float) -> int:
    env, app, admin = demo.stack.env, demo.app, demo.admin
    console.print(f"function app {env['LOCAL_FUNCTIONS_URL']}, emulator {env['EMULATOR_ADMIN_URL']}\n")
    console.print(Rule("1. The estate before"))
    console.print(estate(admin.state()))

    key_id = "https://contoso-cmk.vault.azure.net/keys/acr-cmk"
    console.print(Rule("2. What would rotating acr-cmk touch?  POST /api/rotations/plan"))
    status, plan = app.call("POST", "/api/rotations/plan", {"keyId": key_id})
    console.print(f"HTTP {status}, desired version {plan['desiredVersion']}")
    console.print(steps_table(plan["steps"]))

    console.print(Rule("3. KeyClient.rotate_key('acr-cmk'): Key Vault's event does the rest"))
    vault = vault_client(env)
    new = vault.rotate_key("acr-cmk").properties.version
    delivered = demo.event_for("acr-cmk", new)
    console.print(
        f"Key Vault published KeyNewVersionCreated {delivered['eventId']} for {new}; Event Grid delivered it"
    )
    demo.show(demo.run_for_event(delivered["eventId"]))

    console.print(
        Rule("4. The sweep timer (run now): batch-cmk nears expiry, the app makes its next version")
    )
    before = {d["eventId"] for d in demo.deliveries()}
    demo.stack.timers.fire("sweep_drift")
    renewal = wait_for(
        lambda: next(
            (d for d in demo.deliveries() if d["eventId"] not in before and d["subject"] == "batch-cmk"), None
        ),
        "batch-cmk's new version",
    )
    console.print(
        f"the app made batch-cmk version {renewal.get('version')}; Key Vault announced it ({renewal['eventId']})"
    )
    demo.run_for_event(renewal["eventId"])  # the announcement's run finds everything current
    for run in demo.runs_for_key("https://contoso-cmk.vault.azure.net/keys/batch-cmk"):
        demo.show(run)

    console.print(Rule("5. Failures: ARM refuses contosoedge, and the app cannot take events for a while"))
    admin.add_fault(
        method="PATCH", host="management.azure.com", pathRegex="registries/contosoedge$", status=403
    )
    fresh = vault.create_rsa_key(
        "acr-cmk", size=3072, key_operations=["wrapKey", "unwrapKey"]
    ).properties.version
    poisoned = demo.event_for("acr-cmk", fresh)
    console.print(
        f"new acr-cmk version {fresh}: its run fails on contosoedge, the queue retries, then poison"
    )
    wait_for(lambda: _poison_count(env) > 0, "the poison queue")
    admin.add_fault(host="eventgrid-delivery", status=500)
    batch = vault.rotate_key("batch-cmk").properties.version
    letter = demo.event_for("batch-cmk", batch, outcome="dead-lettered")
    console.print(f"batch-cmk {batch}: every delivery answered 500 -> dead letter {letter['blob']}")

    cli = CliRunner(env={"COLUMNS": str(console.width)})
    console.print(Rule("6. On call: rotation deadletters list"))
    console.print(cli.invoke(rotation_cli, ["deadletters", "list"]).output)
    console.print(Rule("7. Cause fixed (role restored, app healthy): rotation replay --yes"))
    admin.clear_faults()
    replayed = cli.invoke(rotation_cli, ["-o", "json", "replay", "--yes"])
    for outcome in json.loads(replayed.output):
        console.print(
            f"{outcome['action']}: {outcome['source']} {outcome['eventId']} -> run {outcome['runId']} {outcome['status']}"
        )
        demo.runs.append(app.call("GET", f"/api/rotations/{outcome['runId']}")[1])
    again = json.loads(cli.invoke(rotation_cli, ["-o", "json", "replay", "--yes"]).output)
    console.print(
        f"a second replay: {sorted({o['action'] for o in again})} (event {poisoned['eventId']} ran once)"
    )

    console.print(Rule("8. The estate after"))
    console.print(estate(admin.state()))
    trail_ok = audit_trail(cli, demo.runs)
    console.print(f"{call_summary(admin.calls()['calls'])}; demo took {time.monotonic() - started:.1f}s")
    return verdict(demo.runs, trail_ok)


def audit_trail(cli: CliRunner, runs: list[dict[str, Any]]) -> bool:
    """Every decision above went into the hash-chained audit trail: check every run's chain
    against its anchor, then tell one run's story, as on-call would read it (the shortest run
    that moved something: the story without a page of steps)."""
    console.print(Rule("9. The audit trail: rotation audit verify, rotation audit show"))
    console.print("$ rotation audit verify", highlight=False)
    verified = cli.invoke(rotation_cli, ["audit", "verify"])
    console.print(verified.output.strip(), highlight=False, markup=False)
    moved = [r for r in runs if any(s.get("outcome") == "verified" for s in r["steps"])] or runs
    if not moved:
        return verified.exit_code == 0
    first = min(moved, key=lambda r: len(r["steps"]))["runId"][:8]
    console.print(f"$ rotation audit show {first}", highlight=False)
    shown = cli.invoke(rotation_cli, ["audit", "show", first])
    console.print(shown.output.rstrip(), highlight=False, markup=False)
    return verified.exit_code == 0 and shown.exit_code == 0


APP_CALLS = ("eventgrid-delivery",)  # Event Grid's deliveries to the app's webhook
WRITES = ("PATCH", "PUT", "DELETE", "POST")


def _counted(call: dict[str, Any]) -> bool:
    """Key Vault, Managed HSM, ARM and the app's webhook; not managed-identity tokens."""
    host = str(call.get("host", "")).lower()
    return (
        host in APP_CALLS or host in ARM_HOSTS or host.endswith((".vault.azure.net", ".managedhsm.azure.net"))
    )


def call_summary(calls: list[dict[str, Any]]) -> str:
    """How many calls the demo made, and how many writes Azure accepted (refused ones are not)."""
    counted = [c for c in calls if _counted(c)]
    accepted = [
        c
        for c in counted
        if c["method"] in WRITES
        and c["host"] not in APP_CALLS
        and not c.get("dropped")
        and int(c.get("status") or 0) < 400
    ]
    return f"{len(counted)} calls to Key Vault, ARM and the app's webhook, {len(accepted)} writes accepted"


def verdict(runs: list[dict[str, Any]], audit_ok: bool) -> int:
    code, line = closing_line(runs, audit_ok)
    console.print(Rule())
    console.print(line, soft_wrap=True)  # a banner in a Rule is cut at the terminal's width
    return code


def closing_line(runs: list[dict[str, Any]], audit_ok: bool) -> tuple[int, str]:
    """The exit code and the banner: converged or not, and what is left for a person."""
    if not (all(converged(run) for run in runs) and audit_ok):
        return 1, "[bold red]did not converge[/]"
    people = person_needed(runs)
    if not people:
        return 0, "[bold green]converged[/]: nothing left for a person"
    count = (
        f"{len(people)} step{'s' if len(people) > 1 else ''} need{'s' if len(people) == 1 else ''} a person"
    )
    return 0, f"[bold green]converged[/]; [bold yellow]{count}: {', '.join(people)}[/], see {RUNBOOK}"


def _poison_count(env: dict[str, str]) -> int:
    from azure.storage.queue import QueueClient

    queue = QueueClient.from_connection_string(env["AzureWebJobsStorage"], "rotation-requests-poison")
    return int(queue.get_queue_properties().approximate_message_count or 0)


if __name__ == "__main__":
    sys.exit(main())
