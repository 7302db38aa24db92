"""`rotation inventory`, `rotation report` and `rotation versions show|disable`: the estate as a
whole (who uses which key version), compliance evidence, and the retire guard. Registered on
the `rotation` group in rotation/doors/cli.py; exit codes as there (DESIGN.md section 7)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from rotation.core import retire
from rotation.core.inventory import (
    COLUMNS,
    Estate,
    Filters,
    InvalidFilter,
    KeyView,
    collect,
    holders_by_version,
)
from rotation.core.report import build as build_report
from rotation.model.ids import InvalidId, KeyRef, parse_key_id

EXIT_OK, EXIT_USAGE, EXIT_NEEDS_PERSON, EXIT_FAILED, EXIT_UNREACHABLE = 0, 2, 3, 4, 5
FORMATS = ("table", "json", "csv")
out = Console()
err = Console(stderr=True)
_output = click.option(
    "--output",
    "-o",
    "output",
    type=click.Choice(FORMATS),
    default=None,
    help="table, json or csv (rows only).",
)


def _fail(code: int, message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


def _key(text: str | None, *, versioned: bool = False) -> KeyRef | None:
    if text is None:
        return None
    try:
        return parse_key_id(text, require_version=versioned)
    except InvalidId as exc:
        raise click.BadParameter(str(exc)) from None


def emit(
    obj: Any, output: str | None, payload: Any, rows: list[dict[str, Any]], columns: Sequence[str]
) -> str:
    """JSON (the whole payload), CSV (the rows) or nothing here (the caller draws a table).
    Returns the format used."""
    fmt = output or getattr(obj, "output", "table")
    if fmt == "json":
        out.print_json(json.dumps(payload, default=str))
    elif fmt == "csv":
        writer = csv.DictWriter(
            sys.stdout, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _cell(row.get(c)) for c in columns})
    return fmt if fmt in ("json", "csv") else "table"


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def _short(resource_id: str) -> str:
    parts = resource_id.split("/")
    return f"{parts[-1]} [dim]{parts[4]}[/]" if len(parts) >= 9 else resource_id


def _table(*columns: str) -> Table:
    table = Table(header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


# -- inventory ----------------------------------------------------------------------------------
INVENTORY_COLUMNS = COLUMNS


@click.command("inventory")
@click.option("--vault", help="Only consumers of keys in this vault or Managed HSM host.")
@click.option("--key", "key_id", help="Only consumers of this key (versionless id).")
@click.option("--kind", help="Only this consumer kind (registry, batch, containergroup, ...).")
@_output
@click.pass_obj
def inventory_command(
    obj: Any, vault: str | None, key_id: str | None, kind: str | None, output: str | None
) -> None:
    """Every CMK consumer: the key version it holds and what a run would do now."""
    service = obj.service
    try:
        filters = Filters.parse(vault, _key(key_id), kind, service.reconciler.kinds)
    except InvalidFilter as exc:
        raise click.BadParameter(str(exc)) from None
    with err.status("listing consumers across subscriptions…"):
        estate = collect(service.reconciler, filters)
    rows = [r.to_dict() for r in estate.rows]
    if emit(obj, output, estate.to_dict(), rows, INVENTORY_COLUMNS) == "table":
        print_inventory(estate)
    sys.exit(EXIT_UNREACHABLE if estate.unreachable else EXIT_OK)


def print_inventory(estate: Estate) -> None:
    """Narrow enough for a terminal; every column is in -o json / csv."""
    table = _table("resource", "key", "holds", "desired", "action", "wave")
    for row in estate.rows:
        table.add_row(
            row.resource_id.rsplit("/", 1)[-1],
            row.key_id.split("/keys/")[-1] + (" [yellow](outside)[/]" if row.outside else ""),
            row.version[:8] if row.version != "versionless" else "[dim]versionless[/]",
            (row.desired_version or "-")[:8],
            row.action or f"[dim]{row.reason}[/]",
            row.wave,
        )
    out.print(table if estate.rows else "[dim]no consumers found[/]")
    keys = _table("key", "desired", "expires", "policy", "versions (consumers)")
    for view in estate.keys:
        info = view.to_dict()
        policy = info["rotationPolicy"]
        keys.add_row(
            view.key.name + (" [yellow](outside)[/]" if view.outside else ""),
            (info["desiredVersion"] or info["blockedReason"] or "-")[:8],
            (info["expires"] or "-")[:10],
            "-"
            if policy is None
            else f"{policy['expiresAfter'] or 'none'}{', rotates' if policy['rotates'] else ''}",
            ", ".join(f"{v['version'][:8]} ({v['consumers']})" for v in info["versions"])
            or info["error"]
            or "",
        )
    out.print(keys)
    for error in estate.discovery_errors:
        err.print(
            f"[red]could not list {error['kind']} in {error['scope']}:[/] {error['message']}", highlight=False
        )


# -- report -------------------------------------------------------------------------------------
REPORT_COLUMNS = (
    "resourceId",
    "kind",
    "keyId",
    "version",
    "effectiveVersion",
    "created",
    "expires",
    "ageDays",
    "stale",
    "action",
    "notMoved",
)


@click.command("report")
@click.option(
    "--max-age-days", type=click.IntRange(1, 3650), required=True, help="Oldest acceptable version."
)
@_output
@click.pass_obj
def report_command(obj: Any, max_age_days: int, output: str | None) -> None:
    """Consumers on a key version older than N days or expiring soon, and why (exit 3 if any)."""
    service = obj.service
    with err.status("listing consumers and reading keys…"):
        estate = collect(service.reconciler)
    report = build_report(
        estate,
        now=datetime.now(UTC),
        max_age_days=max_age_days,
        window_days=service.settings.expiry_window_days,
    )
    if emit(obj, output, report.to_dict(), report.stale, REPORT_COLUMNS) == "table":
        table = _table("resource", "key", "version", "age (days)", "expires", "why stale", "why not moved")
        for row in report.stale:
            table.add_row(
                _short(row["resourceId"]),
                row["keyId"].split("/keys/")[-1],
                row["effectiveVersion"][:8] + (" (versionless)" if row["version"] == "versionless" else ""),
                str(row["ageDays"]),
                (row["expires"] or "-")[:10],
                "; ".join(row["stale"]),
                row["notMoved"],
            )
        out.print(
            table if report.stale else f"[green]no consumer is on a version older than {max_age_days} days[/]"
        )
        for item in report.not_evaluated:
            err.print(f"[yellow]not evaluated:[/] {item['resourceId']} ({item['reason']})", highlight=False)
        for candidate in report.retire_candidates:
            err.print(
                f"[dim]retire candidate (no consumer holds it):[/] {candidate['keyId']}", highlight=False
            )
    sys.exit(report.exit_code)


# -- versions -----------------------------------------------------------------------------------
@click.group("versions")
def versions() -> None:
    """A key's versions and who holds each; disable one only when nothing does."""


VERSION_COLUMNS = ("version", "enabled", "created", "notBefore", "expires", "consumers", "holders")


@versions.command("show")
@click.argument("key_id")
@_output
@click.pass_obj
def versions_show(obj: Any, key_id: str, output: str | None) -> None:
    """Each version of KEY_ID: state, dates and the consumers on it."""
    key = _key(key_id)
    assert key is not None
    service = obj.service
    if not service.settings.vault_allowed(key.vault_host):
        _fail(EXIT_USAGE, f"vault {key.vault_host} is not in ROTATION_ALLOWED_VAULTS")
    with err.status("listing consumers and reading the key…"):
        view = retire.key_view(service, key)
    if view.error:
        _fail(EXIT_USAGE if view.error.get("status") == 404 else EXIT_UNREACHABLE, view.error["message"])
    rows = version_rows(view)
    payload = {**view.to_dict(), "versions": rows, "retireCandidates": retire.retire_candidates(view)}
    if emit(obj, output, payload, rows, VERSION_COLUMNS) == "table":
        state = view.state
        assert state is not None
        table = _table("version", "state", "created", "expires", "consumers")
        for row in reversed(rows):
            marks = [
                m
                for m, on in (
                    ("current", row["version"] == state.current_version),
                    ("desired", row["version"] == (state.desired.version if state.desired else None)),
                )
                if on
            ]
            table.add_row(
                row["version"] + (f" [bold]({', '.join(marks)})[/]" if marks else ""),
                "enabled" if row["enabled"] else "[red]disabled[/]",
                (row["created"] or "")[:10],
                (row["expires"] or "-")[:10],
                "\n".join(h.rsplit("/", 1)[-1] for h in row["holders"]) or "[dim]none[/]",
            )
        out.print(table)
    sys.exit(EXIT_UNREACHABLE if any(e.error.unreachable for e in view.discovery_errors) else EXIT_OK)


def version_rows(view: KeyView) -> list[dict[str, Any]]:
    held = holders_by_version(view.consumers, view.state)
    rows = []
    for version in view.to_dict()["versions"]:
        holders = [c.target for c in held.get(version["version"], ())]
        rows.append({**version, "holders": holders})
    return rows


@versions.command("disable")
@click.argument("key_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Disable even while consumers hold it (audited as an override).")
@_output
@click.pass_obj
def versions_disable(obj: Any, key_id: str, yes: bool, force: bool, output: str | None) -> None:
    """Disable VERSIONED_KEYID in Key Vault, refused (exit 3) while any consumer holds it."""
    from rotation.doors.cli import operator

    key = _key(key_id, versioned=True)
    assert key is not None
    service = obj.service
    if not yes:
        if not sys.stdin.isatty():
            _fail(EXIT_USAGE, "refusing to disable a key version without confirmation: pass --yes")
        click.confirm(
            f"Disable {key.id}{' even if consumers hold it' if force else ''}?", abort=True, err=True
        )
    try:
        with err.status("checking who holds the version…"):
            outcome = retire.disable(service, key, force=force, actor=operator())
    except retire.RetireError as exc:
        _fail(EXIT_FAILED if exc.busy else EXIT_USAGE, str(exc))
        return
    if (
        emit(
            obj, output, outcome.to_dict(), [outcome.to_dict()], ("keyId", "outcome", "consumers", "message")
        )
        == "table"
    ):
        style = "red" if outcome.refused else "yellow" if outcome.outcome == retire.OVERRIDDEN else "green"
        out.print(f"[{style}]{outcome.outcome}[/] {key.id}: {outcome.message}", highlight=False)
        for holder in outcome.holders:
            out.print(f"  held by {holder}", highlight=False)
    sys.exit(EXIT_NEEDS_PERSON if outcome.refused else EXIT_OK)
