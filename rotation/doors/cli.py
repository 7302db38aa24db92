"""`rotation`: the command line for on-call engineers and platform teams.

It talks to Azure with DefaultAzureCredential (az login on a laptop, managed identity in
Azure) and runs reconcile in-process. Exit codes (DESIGN.md section 7): 0 converged or
nothing to do; 2 usage or configuration error; 3 converged but a step needs a person; 4 a
target failed; 5 Key Vault or ARM unreachable.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
import time
from typing import Any

import click
from azure.core.exceptions import AzureError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rotation.config import ConfigError
from rotation.core.policy import NEEDS_PERSON, UPDATE
from rotation.core.reconcile import Plan, RunResult, Unreachable
from rotation.core.waves import describe as describe_waves
from rotation.doors.worker import continue_later
from rotation.model.ids import CONSUMER_TYPES, InvalidId, KeyRef, parse_key_id, parse_resource_id
from rotation.service import Service
from rotation.storage.audit import AuditUnavailable
from rotation.storage.ledger import Lease, LeaseHeld, lease_owner
from rotation.storage.queue import new_request

EXIT_OK, EXIT_USAGE, EXIT_NEEDS_PERSON, EXIT_FAILED, EXIT_UNREACHABLE = 0, 2, 3, 4, 5
out = Console()
err = Console(stderr=True)
_ACTION_STYLE = {
    "update": "bold cyan",
    "already-current": "green",
    "auto-rotating": "green",
    "opted-out": "dim",
    "newer-than-desired": "yellow",
    "redeploy-required": "yellow",
    "blocked": "bold red",
}
_OUTCOME_STYLE = {
    "verified": "bold green",
    "updated": "green",
    "planned": "cyan",
    "skipped": "dim",
    "failed": "bold red",
}


class Context:
    def __init__(self, output: str) -> None:
        self.output = output
        self._service: Service | None = None

    @property
    def service(self) -> Service:
        if self._service is None:
            try:
                self._service = Service.from_environment()
            except ConfigError as exc:
                fail(EXIT_USAGE, f"configuration error: {exc}")
            self._service.ensure_storage()
        return self._service


def fail(code: int, message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


def operator() -> str:
    """Who runs the command, for the audit trail."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def parse_key(text: str) -> KeyRef:
    try:
        return parse_key_id(text)
    except InvalidId as exc:
        raise click.BadParameter(str(exc)) from None


def parse_targets(values: tuple[str, ...]) -> tuple[str, ...] | None:
    if not values:
        return None
    try:
        return tuple(str(parse_resource_id(v, CONSUMER_TYPES)) for v in values)
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="--target") from None


def short(target: str) -> str:
    parts = target.split("/")
    return f"{parts[-1]}  [dim]{parts[4]}/{parts[2][:8]}…[/]" if len(parts) >= 9 else target


class _Group(click.Group):
    """Storage, Key Vault or ARM failing outside a run ends with exit code 5 and one line, not a
    traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (AuditUnavailable, AzureError) as exc:
            fail(
                EXIT_UNREACHABLE,
                f"could not reach storage, Key Vault or ARM: {' '.join(str(exc).split())[:500]}",
            )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Table for people, JSON for scripts (csv: inventory, report and versions).",
)
@click.pass_context
def main(ctx: click.Context, output: str) -> None:
    """Rotate customer-managed keys into the Azure resources that use them."""
    ctx.obj = Context(output)


# -- plan ----------------------------------------------------------------------------------------
@main.command()
@click.argument("key_id")
@click.option("--target", "targets", multiple=True, metavar="RESOURCE_ID", help="Limit to these resources.")
@click.pass_obj
def plan(obj: Context, key_id: str, targets: tuple[str, ...]) -> None:
    """Show what rotating KEY_ID would touch (read only)."""
    key = parse_key(key_id)
    service = obj.service
    if not service.settings.vault_allowed(key.vault_host):
        fail(EXIT_USAGE, f"vault {key.vault_host} is not in ROTATION_ALLOWED_VAULTS")
    with err.status("reading Key Vault and ARM…"):
        try:
            result = service.reconciler.plan(key, parse_targets(targets))
        except Unreachable as exc:
            fail(EXIT_USAGE if exc.info.status == 404 else EXIT_UNREACHABLE, str(exc))
    if obj.output == "json":
        out.print_json(json.dumps(result.to_dict()))
    else:
        print_plan(result)
    sys.exit(plan_exit_code(result))


def plan_exit_code(result: Plan) -> int:
    if any(e["unreachable"] for e in result.discovery_errors):
        return EXIT_UNREACHABLE
    needs_person = result.discovery_errors or any(s.action in NEEDS_PERSON for s in result.steps)
    return EXIT_NEEDS_PERSON if needs_person else EXIT_OK


def print_plan(result: Plan, console: Console = out) -> None:
    desired = result.desired_version or f"none usable ({result.state.blocked_reason})"
    console.print(f"[bold]{result.key.versionless_id}[/]  desired version [bold]{desired}[/]")
    table = Table(show_lines=False, header_style="bold")
    for column in ("target", "kind", "action", "from", "to", "why"):
        table.add_column(column, overflow="fold")
    for step in result.steps:
        table.add_row(
            short(step.target),
            step.kind,
            f"[{_ACTION_STYLE.get(step.action, '')}]{step.action}[/]",
            (step.from_version or "versionless")[:8],
            (step.to_version or "-")[:8] if step.action == UPDATE else "",
            step.message,
        )
    console.print(table if result.steps else "[dim]no consumers of this key were found[/]")
    if waves_line := describe_waves(result.steps):
        console.print(waves_line, highlight=False)
    _print_problems(result.discovery_errors, result.not_consumers, result.warnings)


def _print_problems(errors: Any, strangers: Any, warnings: Any) -> None:
    for error in errors:
        err.print(
            f"[red]could not list {error['kind']} in {error['scope']}:[/] {error['message']}", highlight=False
        )
    for target in strangers:
        err.print(f"[yellow]{target} does not use this key[/]", highlight=False)
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)


# -- rotate --------------------------------------------------------------------------------------
@main.command()
@click.argument("key_id")
@click.option("--dry-run", is_flag=True, help="Plan and audit, change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--target", "targets", multiple=True, metavar="RESOURCE_ID", help="Limit to these resources.")
@click.pass_obj
def rotate(obj: Context, key_id: str, dry_run: bool, yes: bool, targets: tuple[str, ...]) -> None:
    """Move every consumer of KEY_ID to its desired version, now, from this machine.

    A KEY_ID with a version asserts that version is the desired one.
    """
    key = parse_key(key_id)
    service = obj.service
    if not service.settings.vault_allowed(key.vault_host):
        fail(EXIT_USAGE, f"vault {key.vault_host} is not in ROTATION_ALLOWED_VAULTS")
    target_ids = parse_targets(targets)
    try:
        preview = service.reconciler.plan(key, target_ids)
    except Unreachable as exc:
        fail(EXIT_USAGE if exc.info.status == 404 else EXIT_UNREACHABLE, str(exc))
    if key.version and preview.desired_version != key.version:
        fail(
            EXIT_USAGE,
            f"{key.version} is not the desired version of {key.versionless_id} "
            f"(desired: {preview.desired_version or 'none usable'})",
        )
    updates = sum(1 for s in preview.steps if s.action == UPDATE)
    if not dry_run and updates and not yes:
        if obj.output == "table":
            print_plan(preview)
        if not sys.stdin.isatty():
            fail(EXIT_USAGE, "refusing to change resources without confirmation: pass --yes")
        click.confirm(f"Update {updates} resource(s) to {preview.desired_version}?", abort=True, err=True)
    request = new_request(
        key, "cli", operator(), dry_run=dry_run, targets=target_ids, event_version=key.version
    )
    lease = None if dry_run else take_lease(service, request)
    try:
        result = _run_with_progress(
            service, request, updates if not dry_run else 0, obj.output == "table", lease
        )
    finally:
        if lease is not None:
            lease.release()
    continue_later(service, request, result)  # canary waves soaking: the queue carries on
    if obj.output == "json":
        out.print_json(json.dumps(result.to_dict()))
    else:
        print_result(result)
    sys.exit(result.exit_code)


def take_lease(service: Service, request: Any) -> Lease:
    """The key's lease for this run, waiting (within the time budget) while another run holds it."""
    deadline = time.monotonic() + service.settings.time_budget_seconds
    while True:
        lease = service.ledger.acquire(request.key, owner=lease_owner(request.request_id))
        if not isinstance(lease, LeaseHeld):
            return lease.keep_alive()
        if time.monotonic() + lease.seconds_left() > deadline:
            fail(
                EXIT_FAILED,
                f"run {lease.owner} holds {request.key_id} until {lease.expires_at:%H:%M:%S} UTC; "
                "try again later",
            )
        with err.status(f"waiting for run {lease.owner} to release {request.key_id}…"):
            time.sleep(min(lease.seconds_left() + 1, 10))


def _run_with_progress(
    service: Service, request: Any, updates: int, show: bool, lease: Lease | None
) -> RunResult:
    if not updates or not show or not err.is_terminal:
        return service.reconciler.run(request, lease=lease)
    columns = (TextColumn("updating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("update", total=updates)

        def advance(step: Any) -> None:
            if step.action == UPDATE:
                progress.advance(task)

        return service.reconciler.run(request, progress=advance, lease=lease)


def print_result(result: RunResult) -> None:
    verb = "would move" if result.dry_run else "moved"
    out.print(
        f"run [bold]{result.run_id}[/]  {result.key_id}  desired [bold]{result.desired_version}[/]  "
        f"status [bold]{result.status}[/]"
    )
    table = Table(header_style="bold")
    for column in ("target", "action", "outcome", "from → to", "detail"):
        table.add_column(column, overflow="fold")
    for step in result.steps:
        detail = step.error or step.message
        if step.hint:
            detail += f"\n[italic]{step.hint}[/]"
        moved = (
            f"{(step.from_version or 'versionless')[:8]} → {(step.to_version or '')[:8]}"
            if step.action == UPDATE
            else ""
        )
        table.add_row(
            short(step.target),
            f"[{_ACTION_STYLE.get(step.action, '')}]{step.action}[/]",
            f"[{_OUTCOME_STYLE.get(step.outcome, '')}]{step.outcome}[/]",
            moved,
            detail,
        )
    out.print(table if result.steps else "[dim]no consumers of this key were found[/]")
    counts = {s.outcome: 0 for s in result.steps}
    for step in result.steps:
        counts[step.outcome] += 1
    out.print(f"{verb}: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) if counts else "")
    if waves_line := describe_waves(result.steps):
        out.print(waves_line, highlight=False)
    _print_problems(result.discovery_errors, [], result.notes)
    if result.error:
        err.print(f"[red]{result.error.summary()}[/]", highlight=False)


# -- sweep ---------------------------------------------------------------------------------------
@main.command("sweep")
@click.option("--dry-run", is_flag=True, help="Report what would be queued, queue nothing.")
@click.pass_obj
def sweep_command(obj: Context, dry_run: bool) -> None:
    """Find keys whose consumers drifted or whose version nears expiry; queue one request each."""
    from rotation.core.sweep import sweep

    with err.status("listing consumers across subscriptions…"):
        result = sweep(obj.service, dry_run=dry_run, actor=operator())
    findings = result.findings
    if obj.output == "json":
        out.print_json(json.dumps([f.to_dict() for f in findings]))
    else:
        table = Table(header_style="bold")
        for column in ("key", "consumers", "behind", "near expiry", "result"):
            table.add_column(column, overflow="fold")
        for finding in findings:
            result = (
                f"queued {finding.request_id}"
                if finding.request_id
                else "[yellow]would queue[/]"
                if finding.needs_work
                else f"[yellow]skipped: {finding.error}[/]"
                if finding.skipped
                else f"[red]{finding.error}[/]"
                if finding.error
                else "[green]nothing to do[/]"
            )
            table.add_row(
                finding.key.versionless_id,
                str(finding.consumers),
                str(finding.behind),
                finding.near_expiry or "",
                result,
            )
        out.print(table if findings else "[dim]no consumers of any allowed key were found[/]")
    for error in result.discovery_errors:
        err.print(
            f"[red]could not list {error.kind} in {error.scope}:[/] {error.error.summary()}", highlight=False
        )
    if result.unreachable:
        sys.exit(EXIT_UNREACHABLE)
    sys.exit(EXIT_NEEDS_PERSON if result.discovery_errors or any(f.skipped for f in findings) else EXIT_OK)


# -- audit ---------------------------------------------------------------------------------------
@main.group()
def audit() -> None:
    """Read and verify the audit trail."""


def _when(text: str | None, name: str) -> Any:
    if not text:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=name) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@audit.command("list")
@click.option("--key", "key_id", help="Only records of this key (versionless id).")
@click.option("--target", help="Only records about this resource id.")
@click.option("--run", "run_id", help="Only records of this run.")
@click.option("--since", help="ISO 8601 time (default: 30 days before --until).")
@click.option("--until", help="ISO 8601 time (default: now).")
@click.option("--top", type=click.IntRange(1, 5000), default=50, show_default=True)
@click.pass_obj
def audit_list(
    obj: Context,
    key_id: str | None,
    target: str | None,
    run_id: str | None,
    since: str | None,
    until: str | None,
    top: int,
) -> None:
    """Audit records, newest first."""
    key = parse_key(key_id).versionless_id if key_id else None
    records, token = obj.service.audit.query(
        key=key,
        target=target,
        run=run_id,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        top=top,
    )
    records = records[:top]
    if obj.output == "json":
        out.print_json(json.dumps({"records": records, "continuation": token}, default=str))
        return
    print_records(records)
    if token:
        err.print("[dim]more records exist: narrow the window or raise --top[/]")


def print_records(records: list[dict[str, Any]], console: Console = out) -> None:
    table = Table(header_style="bold")
    for column in ("time", "kind", "run", "target", "outcome", "detail"):
        table.add_column(column, overflow="fold")
    for record in records:
        target = record.get("target") or ""
        detail = " ".join(
            str(x)
            for x in (
                record.get("action"),
                record.get("reason"),
                record.get("errorCode"),
                record.get("message"),
            )
            if x
        )
        table.add_row(
            record["time"][:23],
            record["kind"],
            (record.get("runId") or "")[:8],
            target.rsplit("/", 1)[-1],
            record.get("outcome") or "",
            detail,
        )
    console.print(table)


@audit.command("show")
@click.argument("run_id")
@click.pass_obj
def audit_show(obj: Context, run_id: str) -> None:
    """A run's record and its whole audit chain, in order."""
    run = obj.service.runs.get(run_id)
    if run is None:
        fail(EXIT_USAGE, f"no run {run_id}")
    anchor = obj.service.audit.latest_anchor(run_id)
    records = obj.service.audit.run_records(run_id, anchor["partition"]) if anchor else []
    if obj.output == "json":
        out.print_json(json.dumps({"run": run, "records": records}, default=str))
        return
    out.print(
        f"run [bold]{run_id}[/]  {run.get('keyId')}  status [bold]{run.get('status')}[/]  "
        f"source {run.get('source')}  actor {run.get('actor')}"
    )
    print_records(records)


@audit.command("verify")
@click.option("--run", "run_ids", multiple=True, help="Verify only these runs (default: all anchored runs).")
@click.pass_obj
def audit_verify(obj: Context, run_ids: tuple[str, ...]) -> None:
    """Recompute the hash chains against the anchors; exit 4 if anything was changed or lost."""
    from rotation.storage.audit import verify

    with err.status("verifying audit chains…"):
        checked, findings = verify(obj.service.audit, run_ids=list(run_ids) or None)
    if obj.output == "json":
        out.print_json(json.dumps({"runsChecked": checked, "findings": [f.__dict__ for f in findings]}))
    else:
        for finding in findings:
            out.print(
                f"[bold red]{finding.problem}[/] run {finding.run_id}: {finding.detail}", highlight=False
            )
        out.print(f"{checked} run(s) checked, {len(findings)} problem(s)")
    sys.exit(EXIT_FAILED if findings else EXIT_OK)


# -- dead letters and replay ------------------------------------------------------------------------
def _selection(
    since: str | None,
    until: str | None,
    key_id: str | None,
    event_ids: tuple[str, ...] = (),
    reason: str | None = None,
) -> Any:
    from rotation.doors.replay import Selection

    return Selection(
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        event_ids=tuple(event_ids),
        key_id=parse_key(key_id).versionless_id if key_id else None,
        reason=reason,
    )


def _age(moment: Any) -> str:
    if moment is None:
        return "?"
    from datetime import UTC, datetime

    seconds = (datetime.now(UTC) - moment).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _clip(text: str | None, limit: int = 90) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _print_items(items: list[Any]) -> None:
    table = Table(header_style="bold")
    for column in (
        "source",
        "age",
        "key",
        "version",
        "event",
        "reason",
        "tries",
        "last outcome",
        "why / error",
        "replayed",
    ):
        table.add_column(column, overflow="fold")
    for item in items:
        replayed = item.replayed
        table.add_row(
            item.source,
            _age(item.time),
            (item.key_id or "").rsplit("/", 1)[-1],
            (item.version or "")[:8],
            (item.event_type or "").rsplit(".", 1)[-1],
            item.reason or "",
            str(item.attempts or ""),
            item.last_outcome or "",
            f"[red]{_clip(item.error)}[/]" if item.error else _clip(item.cause),
            f"{replayed.get('Outcome')} by {replayed.get('Operator')}" if replayed else "",
        )
    out.print(table if items else "[green]nothing failed in this window[/]")


@main.group()
def deadletters() -> None:
    """Failed work: Event Grid dead letters and poison-queue requests."""


@deadletters.command("list")
@click.option("--since", help="ISO 8601 time.")
@click.option("--until", help="ISO 8601 time.")
@click.option("--key", "key_id", help="Only items for this key (versionless id).")
@click.option("--reason", help="Only items whose reason, cause or error contains this text.")
@click.pass_obj
def deadletters_list(
    obj: Context, since: str | None, until: str | None, key_id: str | None, reason: str | None
) -> None:
    """Dead-lettered events and poison requests, oldest first, with why they failed."""
    from rotation.doors.replay import list_failed

    selection = _selection(since, until, key_id, reason=reason)
    with err.status("reading dead letters and the poison queue…"):
        items = list_failed(obj.service, selection)
    if obj.output == "json":
        out.print_json(json.dumps([item.to_dict() for item in items]))
    else:
        _print_items(items)


@main.command("replay")
@click.option("--since", help="ISO 8601 time.")
@click.option("--until", help="ISO 8601 time.")
@click.option("--event-id", "event_ids", multiple=True, help="Only these event (or request) ids.")
@click.option("--key", "key_id", help="Only items for this key (versionless id).")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; write nothing.")
@click.option("--force", is_flag=True, help="Replay items that were already replayed.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def replay_command(
    obj: Context,
    since: str | None,
    until: str | None,
    event_ids: tuple[str, ...],
    key_id: str | None,
    dry_run: bool,
    force: bool,
    yes: bool,
) -> None:
    """Re-process failed events and requests through reconcile, oldest first, here and now."""
    from rotation.doors.replay import list_failed, replay

    service = obj.service
    selection = _selection(since, until, key_id, event_ids)
    with err.status("reading dead letters and the poison queue…"):
        items = list_failed(service, selection, move=not dry_run)
    if not items:
        out.print("[green]nothing to replay[/]")
        sys.exit(EXIT_OK)
    if obj.output == "table":
        _print_items(items)
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            fail(EXIT_USAGE, "refusing to replay without confirmation: pass --yes")
        click.confirm(f"Replay {len(items)} item(s)?", abort=True, err=True)
    who = operator()

    def run(request: Any) -> RunResult:
        lease = take_lease(service, request)
        try:
            result = service.reconciler.run(request, lease=lease)
        finally:
            lease.release()
        continue_later(service, request, result)
        return result

    def show(outcome: Any) -> None:
        if obj.output == "table":
            style = {
                "replayed": "green" if outcome.status in ("succeeded", "needs-attention") else "red",
                "would-replay": "cyan",
            }.get(outcome.action, "dim")
            out.print(
                f"[{style}]{outcome.action}[/] {outcome.item.item_id}"
                + (f" → run {outcome.run_id}: {outcome.status}" if outcome.run_id else "")
                + (f" ({outcome.detail})" if outcome.detail else ""),
                highlight=False,
            )

    outcomes = replay(service, items, operator=who, dry_run=dry_run, force=force, run=run, progress=show)
    if obj.output == "json":
        out.print_json(json.dumps([o.to_dict() for o in outcomes]))
    codes = {o.exit_code for o in outcomes}
    for code in (EXIT_UNREACHABLE, EXIT_FAILED, EXIT_USAGE, EXIT_NEEDS_PERSON):  # the worst one wins
        if code in codes:
            sys.exit(code)
    sys.exit(EXIT_OK)


# -- inventory, report, versions (rotation/doors/estate_cli.py) ---------------------------------------
from rotation.doors import estate_cli  # noqa: E402 - after main: estate_cli uses this module's helpers

main.add_command(estate_cli.inventory_command)
main.add_command(estate_cli.report_command)
main.add_command(estate_cli.versions)
