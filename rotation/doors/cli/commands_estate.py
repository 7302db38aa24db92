"""`inventory`, `report` and `versions show|disable`: the estate as a whole (who uses which key
version), compliance evidence, and the retire guard. Output through the shared `-o`/`--query`
(csv lists the rows the table shows); exit codes from context.py (DESIGN.md section 7)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rotation.doors.cli.context import (
    EXIT_FAILED,
    EXIT_NEEDS_PERSON,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Context,
    err,
    fail,
    operator,
)
from rotation.doors.cli.output import emit, output_options
from rotation.doors.cli.progress import phase
from rotation.doors.cli.render_estate import (
    print_disable,
    print_inventory,
    print_report,
    print_summary,
    print_versions,
)

if TYPE_CHECKING:
    from rotation.estate.inventory import Estate, KeyView
    from rotation.estate.report import AgeReport
    from rotation.model.ids import KeyRef
    from rotation.service import Service


def _key(text: str, *, versioned: bool = False) -> KeyRef:
    from rotation.model.ids import InvalidId, parse_key_id

    try:
        return parse_key_id(text, require_version=versioned)
    except InvalidId as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("inventory")
@click.option("--vault", help="Only consumers of keys in this vault or Managed HSM host.")
@click.option("--key", "key_id", help="Only consumers of this key (versionless id).")
@click.option("--kind", help="Only this consumer kind (registry, batch, containergroup, ...).")
@click.option("--summary", is_flag=True, help="Per key: consumers per version and their age, no rows.")
@output_options
@click.pass_obj
def inventory_command(
    obj: Context, vault: str | None, key_id: str | None, kind: str | None, summary: bool
) -> None:
    """Every CMK consumer: the key version it holds and what a run would do now."""
    from rotation.estate.inventory import Filters, InvalidFilter, collect
    from rotation.estate.pictures import picture

    key = _key(key_id) if key_id else None
    service = obj.azure
    try:
        filters = Filters.parse(vault, key, kind, service.reconciler.kinds)
    except InvalidFilter as exc:
        raise click.BadParameter(str(exc)) from None
    with phase("listing consumers across subscriptions…", obj.for_people):
        estate = collect(service.reconciler, filters)
    if summary:
        pictures = [picture(view, datetime.now(UTC)) for view in estate.keys]
        found = {"keys": [p.to_dict() for p in pictures], "discoveryErrors": list(estate.discovery_errors)}
        emit(obj, found, lambda: print_summary(estate, pictures), rows=found["keys"])
    else:
        emit(obj, estate.to_dict(), lambda: print_inventory(estate), rows=[r.to_dict() for r in estate.rows])
    sys.exit(EXIT_UNREACHABLE if estate.unreachable else EXIT_OK)


@click.command("report")
@click.option(
    "--max-age-days", type=click.IntRange(1, 3650), required=True, help="Oldest acceptable version."
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the report as one self-contained HTML page (charts inline, nothing loaded).",
)
@output_options
@click.pass_obj
def report_command(obj: Context, max_age_days: int, html_file: str | None) -> None:
    """Consumers on a key version older than N days or expiring soon, and why (exit 3 if any)."""
    from rotation.estate.inventory import collect
    from rotation.estate.report import build

    service = obj.azure
    with phase("listing consumers and reading keys…", obj.for_people):
        estate = collect(service.reconciler)
    report = build(
        estate,
        now=datetime.now(UTC),
        max_age_days=max_age_days,
        window_days=service.settings.expiry_window_days,
    )
    if html_file:
        _write_page(service, estate, report, html_file)
    emit(obj, report.to_dict(), lambda: print_report(report, max_age_days), rows=report.stale)
    sys.exit(report.exit_code)


def _write_page(service: Service, estate: Estate, report: AgeReport, path: str) -> None:
    """The HTML page, with each key's last rotation from the run store; written whole or not at all."""
    from rotation.doors.cli.report_page import page
    from rotation.estate.report import last_runs

    allowed = [view.key for view in estate.keys if not view.outside]
    text = page(report, estate, last_runs(service.reconciler, allowed))
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)
    except OSError as exc:
        fail(EXIT_USAGE, f"cannot write {path}: {exc.strerror or exc}")
    err.print(f"wrote {path} ({len(report.pictures)} keys, {len(report.stale)} stale)", highlight=False)


@click.group("versions")
@output_options
def versions() -> None:
    """A key's versions and who holds each; disable one only when nothing does, enable it again."""


@versions.command("show")
@click.argument("key_id")
@output_options
@click.pass_obj
def versions_show(obj: Context, key_id: str) -> None:
    """Each version of KEY_ID: state, dates and the consumers on it."""
    from rotation.estate import retire

    key = _key(key_id)
    if not obj.service.settings.vault_allowed(key.vault_host):  # before signing in
        fail(EXIT_USAGE, f"vault {key.vault_host} is not in ROTATION_ALLOWED_VAULTS")
    service = obj.azure
    with err.status("listing consumers and reading the key…"):
        view = retire.key_view(service, key)
    if view.error:
        fail(EXIT_USAGE if view.error.get("status") == 404 else EXIT_UNREACHABLE, view.error["message"])
    rows = version_rows(view)
    payload = {**view.to_dict(), "versions": rows, "retireCandidates": retire.retire_candidates(view)}
    emit(obj, payload, lambda: print_versions(view, rows), rows=rows)
    sys.exit(EXIT_UNREACHABLE if any(e.error.unreachable for e in view.discovery_errors) else EXIT_OK)


def version_rows(view: KeyView) -> list[dict[str, Any]]:
    from rotation.estate.inventory import holders_by_version

    held = holders_by_version(view.consumers, view.state)
    return [
        {**version, "holders": [c.target for c in held.get(version["version"], ())]}
        for version in view.to_dict()["versions"]
    ]


@versions.command("disable")
@click.argument("key_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Disable even while consumers hold it (audited as an override).")
@output_options
@click.pass_obj
def versions_disable(obj: Context, key_id: str, yes: bool, force: bool) -> None:
    """Disable VERSIONED_KEYID in Key Vault, refused (exit 3) while any consumer holds it."""
    from rotation.estate import retire

    key = _key(key_id, versioned=True)
    if not yes:
        if not sys.stdin.isatty():
            fail(EXIT_USAGE, "refusing to disable a key version without confirmation: pass --yes")
        click.confirm(
            f"Disable {key.id}{' even if consumers hold it' if force else ''}?", abort=True, err=True
        )
    service = obj.azure
    try:
        with err.status("checking who holds the version…"):
            outcome = retire.disable(service, key, force=force, actor=operator())
    except retire.RetireError as exc:
        fail(_retire_exit(exc), str(exc))
    emit(obj, outcome.to_dict(), lambda: print_disable(outcome))
    sys.exit(EXIT_NEEDS_PERSON if outcome.refused else EXIT_OK)


@versions.command("enable")
@click.argument("key_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output_options
@click.pass_obj
def versions_enable(obj: Context, key_id: str, yes: bool) -> None:
    """Enable VERSIONED_KEYID again (undo a disable): audited; the desired version may change."""
    from rotation.estate import retire

    key = _key(key_id, versioned=True)
    if not yes:
        if not sys.stdin.isatty():
            fail(EXIT_USAGE, "refusing to enable a key version without confirmation: pass --yes")
        click.confirm(f"Enable {key.id}?", abort=True, err=True)
    service = obj.azure
    try:
        with err.status("enabling the version…"):
            outcome = retire.enable(service, key, actor=operator())
    except retire.RetireError as exc:
        fail(_retire_exit(exc), str(exc))
    emit(obj, outcome.to_dict(), lambda: print_disable(outcome))
    sys.exit(EXIT_OK)


def _retire_exit(exc: Any) -> int:
    return EXIT_FAILED if exc.busy else EXIT_UNREACHABLE if exc.unreachable else EXIT_USAGE
