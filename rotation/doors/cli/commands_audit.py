"""`audit list`, `audit show`, `audit verify`: read and check the audit trail."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

import click

from rotation.doors import MAX_AUDIT_TOP
from rotation.doors.cli.context import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    err,
    fail,
    option_time,
    out,
    parse_key,
)
from rotation.doors.cli.output import emit, output_options
from rotation.doors.cli.render import print_records

if TYPE_CHECKING:
    from rotation.service import Service
    from rotation.storage.audit import RunningRun

_RUN_PREFIX = re.compile(r"[0-9a-f-]{1,36}")  # run ids are UUIDs; anything else never reaches a query


@click.group()
@output_options
def audit() -> None:
    """Read and verify the audit trail."""


@audit.command("list")
@click.option("--key", "key_id", help="Only records of this key (versionless id).")
@click.option("--target", help="Only records about this resource id.")
@click.option("--run", "run_id", help="Only records of this run.")
@click.option("--since", help="ISO 8601 time (default: 30 days before --until; at most 92 days).")
@click.option("--until", help="ISO 8601 time (default: now).")
@click.option(
    "--top",
    type=click.IntRange(1, MAX_AUDIT_TOP),
    default=50,
    show_default=True,
    help=f"records per page, 1 to {MAX_AUDIT_TOP} (as the HTTP API's top)",
)
@click.option("--continuation", metavar="TOKEN", help="The next page: the token the previous page gave.")
@output_options
@click.pass_obj
def audit_list(
    obj: Context,
    key_id: str | None,
    target: str | None,
    run_id: str | None,
    since: str | None,
    until: str | None,
    top: int,
    continuation: str | None,
) -> None:
    """Audit records, newest first. json and yaml show {records, continuation}; table, tsv and
    csv show the records, and the token for the next page goes to stderr."""
    key = parse_key(key_id).versionless_id if key_id else None
    window = {"since": option_time(since, "--since"), "until": option_time(until, "--until")}
    try:
        records, token = obj.service.audit.query(
            key=key, target=target, run=run_id, top=top, continuation=continuation, **window
        )
    except ValueError as exc:  # the store's refusal (reversed, over 92 days, bad token), as HTTP's 400
        fail(EXIT_USAGE, str(exc))
    records = records[:top]
    if obj.for_people:
        print_records(records)
    elif obj.output in ("tsv", "csv") and obj.query is None:
        emit(obj, records, lambda: None)  # rows only: a pipe reads records, never the token
    else:
        emit(obj, {"records": records, "continuation": token}, lambda: None)
        return  # the token is in the document
    if token:  # the same command with this option gives the next page
        err.print(f"more records: add --continuation {token}", highlight=False, markup=False)


def resolve_run(service: Service, text: str) -> str:  # noqa: RET503 - fail() exits
    """A full run id, or the one run whose id starts with `text` (exit 2 when none or several)."""
    prefix = text.strip().lower()
    if not _RUN_PREFIX.fullmatch(prefix):
        raise click.BadParameter(f"{text!r} is not a run id or a prefix of one", param_hint="RUN_ID")
    matches = service.runs.ids_starting_with(prefix)
    if prefix in matches or len(matches) == 1:
        return prefix if prefix in matches else matches[0]
    if not matches:
        fail(EXIT_USAGE, f"no run {text}")
    fail(EXIT_USAGE, f"{text} matches several runs, give more of the id: {', '.join(matches)}")


@audit.command("show")
@click.argument("run_id")
@output_options
@click.pass_obj
def audit_show(obj: Context, run_id: str) -> None:
    """A run's record and its whole audit chain, in order. RUN_ID may be any unique prefix."""
    service = obj.service
    run_id = resolve_run(service, run_id)
    run = service.runs.get(run_id)
    if run is None:
        fail(EXIT_USAGE, f"no run {run_id}")
    anchor = service.audit.latest_anchor(run_id)
    records = service.audit.run_records(run_id, anchor["partition"]) if anchor else []

    def table() -> None:
        out.print(
            f"run [bold]{run_id}[/]  {run.get('keyId')}  status [bold]{run.get('status')}[/]  "
            f"source {run.get('source')}  actor {run.get('actor')}"
        )
        print_records(records)

    emit(obj, {"run": run, "records": records}, table)


@audit.command("verify")
@click.option("--run", "run_ids", multiple=True, help="Verify only these runs (default: all anchored runs).")
@output_options
@click.pass_obj
def audit_verify(obj: Context, run_ids: tuple[str, ...]) -> None:
    """Recompute the hash chains against the anchors; exit 4 if anything was changed or lost,
    or a run was stopped without closing. --run takes a run id or any unique prefix."""
    from rotation.storage.audit import verify

    wanted = [_resolve_audit_run(obj.service, text) for text in run_ids] or None
    with err.status("verifying audit chains…"):
        checked, findings = verify(obj.service.audit, run_ids=wanted, running=_running(obj.service))

    def table() -> None:
        for finding in findings:
            # not tampering: an outage or a stopped run; still a finding, in its own colour
            colour = "yellow" if finding.problem in ("not-anchored", "unfinished") else "red"
            out.print(
                f"[bold {colour}]{finding.problem}[/] run {finding.run_id}: {finding.detail}", highlight=False
            )
        out.print(f"{checked} run(s) checked, {len(findings)} problem(s)")

    emit(obj, {"runsChecked": checked, "findings": [f.__dict__ for f in findings]}, table)
    sys.exit(EXIT_FAILED if findings else EXIT_OK)


def _resolve_audit_run(service: Service, text: str) -> str:  # noqa: RET503 - fail() exits
    """A run id, or the one run (in the run records or the audit trail) whose id starts with
    `text`; exit 2 when none or several."""
    prefix = text.strip().lower()
    if not _RUN_PREFIX.fullmatch(prefix):
        raise click.BadParameter(f"{text!r} is not a run id or a prefix of one", param_hint="--run")
    matches = sorted(
        set(service.runs.ids_starting_with(prefix)) | set(service.audit.run_ids_starting_with(prefix))
    )
    if prefix in matches or len(matches) == 1:
        return prefix if prefix in matches else matches[0]
    if not matches:
        fail(EXIT_USAGE, f"no run {text} in the run records or the audit trail")
    fail(EXIT_USAGE, f"{text} matches several runs, give more of the id: {', '.join(matches)}")


def _running(service: Service) -> list[RunningRun]:
    """Runs still marked running (dry runs write nothing, so they are left out), each with the
    lease on its key as the ledger holds it."""
    from rotation.model.ids import parse_key_id
    from rotation.model.times import parse_iso_or_none
    from rotation.storage.audit import RunningRun

    found = []
    for row in service.runs.in_status("running"):
        if row.get("DryRun"):
            continue
        try:
            lease = service.ledger.holder(parse_key_id(str(row.get("KeyId"))))
        except ValueError:
            lease = None
        found.append(
            RunningRun(
                str(row["PartitionKey"]),
                row.get("KeyId"),
                (lease or {}).get("Owner"),
                parse_iso_or_none((lease or {}).get("ExpiresAt")),
            )
        )
    return found
