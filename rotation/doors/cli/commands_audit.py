"""`audit list`, `audit show`, `audit verify`: read and check the audit trail."""

from __future__ import annotations

import json
import sys

import click

from rotation.doors.cli.context import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    _when,
    err,
    fail,
    out,
    parse_key,
)
from rotation.doors.cli.render import print_records


@click.group()
def audit() -> None:
    """Read and verify the audit trail."""


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
