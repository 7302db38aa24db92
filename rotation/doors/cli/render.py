"""Tables for people: plans, run results, audit records and failed items."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rotation.doors.cli.context import err, out
from rotation.doors.cli.grid import Grid, show, styled
from rotation.model.decisions import NEEDS_PERSON
from rotation.model.results import count

if TYPE_CHECKING:
    from rotation.doors.replay import FailedItem, ReplayOutcome
    from rotation.estate.sweep import KeyFinding, SweepResult
    from rotation.model.results import Plan, RunResult

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


def version_cell(version: str | None, missing: str = "versionless") -> str:
    """8 characters of a hex version; a word (`versionless`, `-`) whole."""
    if not version:
        return missing
    return version[:8] if all(c in "0123456789abcdefABCDEF" for c in version) else version


def short(target: str) -> Text:
    """A resource's name, then its resource group and subscription, dimmed."""
    parts = target.split("/")
    if len(parts) < 9:
        return Text(target)
    return Text.assemble(parts[-1], "  ", (f"{parts[4]}/{parts[2][:8]}…", "dim"))


def _action(action: str) -> Text:
    return styled(action, _ACTION_STYLE.get(action, ""))


def print_plan(result: Plan, console: Console = out, *, every: bool = False) -> None:
    """Summary first (counts, who needs a person, waves), then the steps that would change or
    need a person; `every` (--all) lists every step."""
    from rotation.model.decisions import UPDATE

    desired = result.desired_version or f"none usable ({result.state.blocked_reason})"
    console.print(
        f"[bold]{result.key.versionless_id}[/]  desired version [bold]{desired}[/]", highlight=False
    )
    if result.steps:
        console.print(f"{len(result.steps)} consumers: {_counts(s.action for s in result.steps)}")
    _print_waves(result.steps, console)
    _print_needs_person(result.steps, console)
    shown = [s for s in result.steps if every or s.action == UPDATE or s.action in NEEDS_PERSON]
    grid = Grid(("target", "kind", "action", "from", "to", "why"))
    for step in shown:
        grid.add(
            short(step.target),
            step.kind,
            _action(step.action),
            version_cell(step.from_version),
            version_cell(step.to_version, "-") if step.action == UPDATE else "",
            step.message,
        )
    _print_rows(grid, result.steps, shown, console)
    _print_problems(result.discovery_errors, result.not_consumers, result.warnings)


def _counts(values: Iterable[str]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(count(values).items()))


def _print_rows(grid: Grid, steps: Sequence[Any], shown: Sequence[Any], console: Console) -> None:
    """The grid, and what it leaves out (the steps nothing happens to) in one line."""
    if not steps:
        console.print("[dim]no consumers of this key were found[/]")
        return
    if grid.rows:
        show(grid, console)
    listed = {id(s) for s in shown}
    if hidden := [s for s in steps if id(s) not in listed]:
        console.print(
            f"[dim]{len(hidden)} more not shown ({_counts(s.action for s in hidden)}): --all lists every one[/]",
            highlight=False,
        )


def _print_waves(steps: Iterable[Any], console: Console) -> None:
    from rotation.run.waves import describe

    if line := describe(steps):  # only when the canary-wave tag splits the updates
        console.print(line, highlight=False)


def needs_person(steps: Iterable[Any], named: int = 3) -> str | None:
    """Why a converged run still ends `needs-attention` (exit 3), in one line, or None: grouped by
    action and reason with counts, naming the first few of each group."""
    groups: dict[tuple[str, str], list[str]] = {}
    for step in steps:
        if step.action in NEEDS_PERSON:
            groups.setdefault((step.action, step.reason), []).append(step.target.rsplit("/", 1)[-1])
    if not groups:
        return None
    total = sum(len(names) for names in groups.values())
    parts = []
    for (action, reason), names in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        more = f" and {len(names) - named} more" if len(names) > named else ""
        parts.append(f"{len(names)} {action} ({reason}): {', '.join(names[:named])}{more}")
    need = f"{total} step{'s' if total > 1 else ''} need{'' if total > 1 else 's'} a person"
    return f"{need}: {'; '.join(parts)}; {RUNBOOK_FIX}"


def _print_needs_person(steps: Iterable[Any], console: Console) -> None:
    line = needs_person(steps)
    if line:
        console.print(f"[yellow]{escape(line)}[/]", highlight=False)


def _print_problems(errors: Any, strangers: Any, warnings: Any) -> None:
    for error in errors:
        err.print(
            f"[red]could not list {error['kind']} in {error['scope']}:[/] {escape(str(error['message']))}",
            highlight=False,
        )
    for target in strangers:
        err.print(f"[yellow]{escape(target)} does not use this key[/]", highlight=False)
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


CHANGED = frozenset({"planned", "updated", "verified", "failed"})


def print_result(result: RunResult, *, every: bool = False) -> None:
    """Summary first, then the steps that changed, failed or need a person (`every`: all)."""
    from rotation.model.decisions import UPDATE

    verb = "would move" if result.dry_run else "moved"
    out.print(
        f"run [bold]{result.run_id}[/]  {result.key_id}  desired [bold]{result.desired_version}[/]  "
        f"status [bold]{result.status}[/]",
        highlight=False,
    )
    if result.steps:
        out.print(f"{verb}: {_counts(s.outcome for s in result.steps)}", highlight=False)
    _print_waves(result.steps, out)
    _print_needs_person(result.steps, out)
    shown = [s for s in result.steps if every or s.outcome in CHANGED or s.action in NEEDS_PERSON]
    grid = Grid(("target", "kind", "action", "outcome", "from → to", "detail"))
    for step in shown:
        detail = step.error or step.message
        moved = (
            f"{version_cell(step.from_version)} → {version_cell(step.to_version, '')}"
            if step.action == UPDATE
            else ""
        )
        grid.add(
            short(step.target),
            step.kind,
            _action(step.action),
            styled(step.outcome, _OUTCOME_STYLE.get(step.outcome, "")),
            moved,
            Text.assemble(detail, ("\n" + step.hint, "italic")) if step.hint else detail,
        )
    _print_rows(grid, result.steps, shown, out)
    _print_problems(result.discovery_errors, [], result.notes)
    if result.error:
        err.print(f"[red]{escape(result.error.summary())}[/]", highlight=False)


def print_records(records: list[dict[str, Any]], console: Console = out) -> None:
    from rotation.azure.kinds import kind_label  # its SDK imports wait until a table is printed

    grid = Grid(("time", "kind", "run", "target", "outcome", "detail"))
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
        grid.add(
            record["time"][:23],
            record["kind"],
            (record.get("runId") or "")[:8],
            kind_label(target) if target else "",
            record.get("outcome") or "",
            detail,
        )
    show(grid, console)


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
        return item.cause  # whole: the status and code on-call acts on may come late in it
    delivery = [item.last_outcome, f"HTTP {item.last_status}" if item.last_status else None]
    return _clip(" ".join(x for x in [item.reason, *delivery] if x))


def print_items(items: list[FailedItem], failures: dict[str, list[str]]) -> None:
    table = Table(header_style="bold")
    for column in (
        "id",
        "run",
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
        table.add_row(
            short_id(item.handle),
            (item.run_id or "")[:8],
            item.source,
            _age(item.time),
            (item.key_id or "").rsplit("/", 1)[-1],
            (item.version or "")[:8],
            (item.event_type or "").rsplit(".", 1)[-1],
            item.reason or "",
            str(item.attempts or ""),
            item.last_outcome or "",
            why(item, failures.get(item.item_id, ())),
            _replayed(item),
        )
    out.print(table if items else "[green]nothing failed in this window[/]")


def short_id(handle: str) -> str:
    """An event or request id's first 8 characters (show, discard and replay take a prefix)."""
    return handle[:8] if "/" not in handle else handle


def _replayed(item: FailedItem) -> str:
    marker = item.replayed or {}
    if item.discarded:
        return f"[dim]discarded by {marker.get('Operator')}: {marker.get('Reason')}[/]"
    return f"{item.replay_outcome} by {marker.get('Operator')}" if marker else ""


def print_item(data: dict[str, Any]) -> None:
    """`deadletters show`: one field a line, nothing cut; then what to do next."""
    replayed = data.get("replayed") or {}
    rows = [
        ("id", data["id"]),
        ("source", data["source"]),
        ("time", data["time"]),
        ("key", data["keyId"]),
        ("version", data["version"]),
        ("event", " ".join(x for x in (data["eventId"], data["eventType"]) if x)),
        ("request", data["requestId"]),
        ("run", data["runId"]),
        ("reason", data["reason"]),
        ("attempts", data["attempts"]),
        ("last delivery", " ".join(str(x) for x in (data["lastOutcome"], data["lastHttpStatus"]) if x)),
        ("cause", data["cause"]),
        ("cannot replay", data["error"]),
        ("last replay failed", ", ".join(data["lastReplayFailures"])),
        ("discarded" if data["discarded"] else "replayed", " ".join(f"{k}={v}" for k, v in replayed.items())),
    ]
    for name, value in rows:
        if value not in (None, ""):
            out.print(f"[bold]{name:>18}[/]  {escape(str(value))}", highlight=False, soft_wrap=True)
    if data["runId"]:
        out.print(f"[bold]{'story':>18}[/]  rotation audit show {data['runId']}", highlight=False)
    if data["replayCommand"]:
        out.print(f"[bold]{'replay':>18}[/]  {data['replayCommand']}", highlight=False, soft_wrap=True)


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
    for run_id in result.closed_runs:
        out.print(
            f"closed sharded run {run_id}: every shard had ended, its close was missing", highlight=False
        )


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
