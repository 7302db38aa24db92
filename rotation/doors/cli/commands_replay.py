"""`deadletters list` and `replay`: failed work, and re-processing it through reconcile."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from rotation.core.reconcile import RunResult
from rotation.doors.cli.commands_run import take_lease
from rotation.doors.cli.context import (
    EXIT_FAILED,
    EXIT_NEEDS_PERSON,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Context,
    _when,
    err,
    fail,
    operator,
    out,
    parse_key,
)
from rotation.doors.cli.render import _print_items


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


@click.group()
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


@click.command("replay")
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
            return service.reconciler.run(request, lease=lease)
        finally:
            lease.release()

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
