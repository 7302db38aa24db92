"""Tables for people: the inventory, the rotation-age report, a key's versions, a disable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rotation.doors.cli.context import err, out
from rotation.doors.cli.grid import Grid, show, styled

if TYPE_CHECKING:
    from rotation.estate.inventory import Estate, KeyView
    from rotation.estate.pictures import KeyPicture
    from rotation.estate.report import AgeReport
    from rotation.estate.retire import DisableOutcome


def _table(*columns: str) -> Table:
    table = Table(header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _short(resource_id: str) -> Text:
    parts = resource_id.split("/")
    return Text.assemble(parts[-1], " ", (parts[4], "dim")) if len(parts) >= 9 else Text(resource_id)


def print_inventory(estate: Estate) -> None:
    """Narrow enough for a terminal (plain columns without one: grid.py); every column is in
    -o json / csv."""
    grid = Grid(("resource", "key", "holds", "desired", "action", "wave"))
    for row in estate.rows:
        grid.add(
            row.resource_id.rsplit("/", 1)[-1],
            Text.assemble(row.key_id.split("/keys/")[-1], (" (outside)" if row.outside else "", "yellow")),
            Text.assemble(
                row.version[:8] if row.version != "versionless" else styled("versionless", "dim"),
                (" (reverted)" if row.reverted else "", "red"),
            ),
            (row.desired_version or "-")[:8],
            row.action or styled(row.reason, "dim"),
            row.wave,
        )
    if grid.rows:
        show(grid)
    else:
        out.print("[dim]no consumers found[/]")
    out.print(_keys_table(estate.keys, estate.counted_kind))
    _print_errors(estate)


def print_summary(estate: Estate, pictures: list[KeyPicture]) -> None:
    """`inventory --summary`: the pictures and the per-key table, no row per consumer."""
    print_pictures(pictures)
    out.print(_keys_table(estate.keys, estate.counted_kind) if estate.keys else "[dim]no consumers found[/]")
    _print_errors(estate)


def _print_errors(estate: Estate) -> None:
    for error in estate.discovery_errors:
        err.print(
            f"[red]could not list {error['kind']} in {error['scope']}:[/] {error['message']}", highlight=False
        )


def _keys_table(views: Any, counted_kind: str | None = None) -> Table:
    # with --kind only that kind was listed: the counts must not read as the whole estate's
    held = f"versions ({counted_kind} consumers only)" if counted_kind else "versions (consumers)"
    keys = _table("key", "desired", "expires", "policy", held)
    for view in views:
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
    return keys


BAR_CELLS = 32  # the longest bar of a chart


def print_pictures(pictures: list[KeyPicture], console: Console = out) -> None:
    """Per key, a bar of consumers per version and a histogram of the age of what they hold."""
    for picture in pictures:
        who = f"{picture.follows} follow new versions by themselves, {picture.pinned} pinned"
        place = " [yellow]outside: vault not allowed, listed from ARM only[/]" if picture.outside else ""
        console.print(
            f"[bold]{picture.name}[/]  {picture.vault}  {picture.consumers} consumers ({who}){place}",
            highlight=False,
        )
        bars = [(v.label, v.consumers, "green" if v.desired else "yellow") for v in picture.versions]
        _chart(console, "consumers per version", bars)
        _chart(console, "age of the version held", [(label, n, "cyan") for label, n in picture.ages])


def _chart(console: Console, title: str, bars: list[tuple[str, int, str]]) -> None:
    console.print(f"  [dim]{title}[/]", highlight=False)
    top = max((n for _, n, _ in bars), default=0) or 1
    width = max((len(label) for label, _, _ in bars), default=0)
    for label, n, style in bars:
        cells = max(1, round(n / top * BAR_CELLS)) if n else 0
        console.print(
            Text.assemble("    ", label.ljust(width), "  ", ("█" * cells, style), f" {n}"), highlight=False
        )


def print_report(report: AgeReport, max_age_days: int) -> None:
    """The pictures first, then the stale consumers (the long table)."""
    print_pictures(list(report.pictures))
    grid = Grid(("resource", "key", "version", "age (days)", "expires", "why stale", "why not moved"))
    for row in report.stale:
        grid.add(
            _short(row["resourceId"]),
            row["keyId"].split("/keys/")[-1],
            row["effectiveVersion"][:8] + (" (versionless)" if row["version"] == "versionless" else ""),
            str(row["ageDays"]),
            (row["expires"] or "-")[:10],
            "; ".join(row["stale"]),
            row["notMoved"],
        )
    if grid.rows:
        show(grid)
    else:
        out.print(f"[green]no consumer is on a version older than {max_age_days} days[/]")
    for item in report.not_evaluated:
        err.print(f"[yellow]not evaluated:[/] {item['resourceId']} ({item['reason']})", highlight=False)
    for candidate in report.retire_candidates:
        err.print(f"[dim]retire candidate (no consumer holds it):[/] {candidate['keyId']}", highlight=False)


def print_versions(view: KeyView, rows: list[dict[str, Any]]) -> None:
    state = view.state
    current = state.current_version if state else None
    desired = state.desired.version if state and state.desired else None
    table = _table("version", "state", "created", "expires", "consumers")
    for row in reversed(rows):
        marks = [
            m
            for m, on in (("current", row["version"] == current), ("desired", row["version"] == desired))
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


def print_disable(outcome: DisableOutcome) -> None:
    from rotation.estate.retire import OVERRIDDEN

    style = "red" if outcome.refused else "yellow" if outcome.outcome == OVERRIDDEN else "green"
    out.print(f"[{style}]{outcome.outcome}[/] {outcome.key.id}: {outcome.message}", highlight=False)
    for holder in outcome.holders:
        out.print(f"  held by {holder}", highlight=False)
