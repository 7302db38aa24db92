"""Tables for people: plans, run results, audit records and failed items."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from rotation.core.policy import UPDATE
from rotation.core.reconcile import Plan, RunResult
from rotation.doors.cli.context import err, out

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


def short(target: str) -> str:
    parts = target.split("/")
    return f"{parts[-1]}  [dim]{parts[4]}/{parts[2][:8]}…[/]" if len(parts) >= 9 else target


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
    _print_problems(result.discovery_errors, [], result.notes)
    if result.error:
        err.print(f"[red]{result.error.summary()}[/]", highlight=False)


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
