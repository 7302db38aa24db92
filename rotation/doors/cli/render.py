"""Tables for people: plans, run results, audit records and failed items."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from rotation.doors.cli.context import err, out

if TYPE_CHECKING:
    from rotation.core.reconcile import Plan, RunResult
    from rotation.core.sweep import KeyFinding, SweepResult
    from rotation.doors.replay import FailedItem, ReplayOutcome

RUNBOOK_FIX = "see docs/runbook.md section 2"

_ACTION_STYLE = {
    "update": "bold cyan",
    "already-current": "green",
    "auto-rotating": "green",
    "opted-out": "dim",
    "newer-than-desired": "yellow",
    "redeploy-required": "yellow",
    "manual-required": "yellow",
    "blocked": "bold red",
}
_OUTCOME_STYLE = {
    "verified": "bold green",
    "updated": "green",
    "planned": "cyan",
    "skipped": "dim",
    "failed": "bold red",
}


# Short fixed vocabularies never fold (`already-curre`/`nt` reads as nothing): a no_wrap column
# is as wide as its longest value, and rich narrows the free-text ones (targets, messages) instead.
FIXED = frozenset({"action", "outcome", "kind", "from", "to", "from → to", "version", "run", "time"})


def add_columns(table: Table, *names: str) -> Table:
    for name in names:
        if name in FIXED:
            table.add_column(name, no_wrap=True)
        else:
            table.add_column(name, overflow="fold", min_width=10)  # never one letter a line
    return table


def version_cell(version: str | None, missing: str = "versionless") -> str:
    """8 characters of a hex version; a word (`versionless`, `-`) whole."""
    if not version:
        return missing
    return version[:8] if all(c in "0123456789abcdefABCDEF" for c in version) else version


def short(target: str) -> str:
    parts = target.split("/")
    return f"{parts[-1]}  [dim]{parts[4]}/{parts[2][:8]}…[/]" if len(parts) >= 9 else target


def print_plan(result: Plan, console: Console = out) -> None:
    from rotation.core.policy import UPDATE

    desired = result.desired_version or f"none usable ({result.state.blocked_reason})"
    console.print(f"[bold]{result.key.versionless_id}[/]  desired version [bold]{desired}[/]")
    table = add_columns(
        Table(show_lines=False, header_style="bold"), "target", "kind", "action", "from", "to", "why"
    )
    for step in result.steps:
        table.add_row(
            short(step.target),
            step.kind,
            f"[{_ACTION_STYLE.get(step.action, '')}]{step.action}[/]",
            version_cell(step.from_version),
            version_cell(step.to_version, "-") if step.action == UPDATE else "",
            step.message,
        )
    console.print(table if result.steps else "[dim]no consumers of this key were found[/]")
    _print_waves(result.steps, console)
    _print_needs_person(result.steps, console)
    _print_problems(result.discovery_errors, result.not_consumers, result.warnings)


def _print_waves(steps: Iterable[Any], console: Console) -> None:
    from rotation.core.waves import describe

    if line := describe(steps):  # only when the canary-wave tag splits the updates
        console.print(line, highlight=False)


def needs_person(steps: Iterable[Any]) -> str | None:
    """Why a converged run still ends `needs-attention` (exit 3), in one line, or None."""
    from rotation.core.policy import NEEDS_PERSON

    named = [
        f"{s.target.rsplit('/', 1)[-1]} {s.action}" + (f": {s.reason}" if s.action == "blocked" else "")
        for s in steps
        if s.action in NEEDS_PERSON
    ]
    if not named:
        return None
    count = f"{len(named)} step{'s' if len(named) > 1 else ''} need{'' if len(named) > 1 else 's'}"
    return f"{count} a person: {', '.join(named)}, {RUNBOOK_FIX}"


def _print_needs_person(steps: Iterable[Any], console: Console) -> None:
    line = needs_person(steps)
    if line:
        console.print(f"[yellow]{line}[/]", highlight=False)


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
    from rotation.core.policy import UPDATE

    verb = "would move" if result.dry_run else "moved"
    out.print(
        f"run [bold]{result.run_id}[/]  {result.key_id}  desired [bold]{result.desired_version}[/]  "
        f"status [bold]{result.status}[/]"
    )
    table = add_columns(
        Table(header_style="bold"), "target", "kind", "action", "outcome", "from → to", "detail"
    )
    for step in result.steps:
        detail = step.error or step.message
        if step.hint:
            detail += f"\n[italic]{step.hint}[/]"
        moved = (
            f"{version_cell(step.from_version)} → {version_cell(step.to_version, '')}"
            if step.action == UPDATE
            else ""
        )
        table.add_row(
            short(step.target),
            step.kind,
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
    _print_waves(result.steps, out)
    _print_needs_person(result.steps, out)
    _print_problems(result.discovery_errors, [], result.notes)
    if result.error:
        err.print(f"[red]{result.error.summary()}[/]", highlight=False)


def print_records(records: list[dict[str, Any]], console: Console = out) -> None:
    from rotation.azure.kinds import kind_label  # its SDK imports wait until a table is printed

    table = add_columns(Table(header_style="bold"), "time", "kind", "run", "target", "outcome", "detail")
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
            kind_label(target) if target else "",
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


def why(item: FailedItem, failures: Sequence[str] = ()) -> str:
    """Why an item failed: it cannot be replayed (red), its last replay's failing targets, the
    cause found in its run's audit trail, or Event Grid's own account of the last delivery."""
    if item.error:
        return f"[red]{_clip(item.error)}[/]"
    if failures:
        return "[red]last replay: " + _clip(", ".join(failures), 200) + "[/]"
    if item.cause:
        return _clip(item.cause)
    delivery = [item.last_outcome, f"HTTP {item.last_status}" if item.last_status else None]
    return _clip(" ".join(x for x in [item.reason, *delivery] if x))


def print_items(items: list[FailedItem], failures: dict[str, list[str]]) -> None:
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
            why(item, failures.get(item.item_id, ())),
            f"{item.replay_outcome} by {replayed.get('Operator')}" if replayed else "",
        )
    out.print(table if items else "[green]nothing failed in this window[/]")


def print_sweep(result: SweepResult) -> None:
    findings = result.findings
    table = Table(header_style="bold")
    for column in ("key", "consumers", "behind", "near expiry", "result"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        table.add_row(
            finding.key.versionless_id,
            str(finding.consumers),
            str(finding.behind),
            finding.near_expiry or "",
            _sweep_result(finding),
        )
    out.print(table if findings else "[dim]no consumers of any allowed key were found[/]")
    if result.not_allowed.consumers:
        out.print(f"[yellow]{result.not_allowed.summary()}[/]", highlight=False, soft_wrap=True)


def _sweep_result(finding: KeyFinding) -> str:
    if finding.request_id:
        return f"queued {finding.request_id}"
    if finding.needs_work:
        return "[yellow]would queue[/]"
    if finding.skipped:
        return f"[yellow]skipped: {finding.error}[/]"
    if finding.error:
        return f"[red]{finding.error}[/]"
    return "[green]nothing to do[/]"


def print_replay_outcome(outcome: ReplayOutcome, failures: Sequence[str]) -> None:
    """One line per replayed item: what ran, how it ended, and which targets failed with what."""
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
    if failures:
        out.print(f"  [red]failed: {', '.join(failures)}[/]", highlight=False)
