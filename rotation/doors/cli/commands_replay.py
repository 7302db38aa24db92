"""`deadletters list` and `replay`: failed work, and re-processing it through reconcile."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from rotation.doors.cli.commands_run import stopping_teller, take_lease
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
    option_time,
    out,
    parse_key,
)
from rotation.doors.cli.output import emit, output_options
from rotation.doors.cli.render import print_item, print_items, print_replay_outcome
from rotation.model.results import INTERRUPTED_EXIT
from rotation.run.stopping import Stop, signals_ask

if TYPE_CHECKING:
    from rotation.doors.replay import FailedItem, Selection
    from rotation.model.request import RotationRequest
    from rotation.model.results import RunResult
    from rotation.service import Service


def _selection(
    since: str | None,
    until: str | None,
    key_id: str | None,
    event_ids: tuple[str, ...] = (),
    reason: str | None = None,
    not_replayed: bool = False,
) -> Selection:
    from rotation.doors.replay import Selection

    return Selection(
        since=option_time(since, "--since"),
        until=option_time(until, "--until"),
        event_ids=tuple(event_ids),
        key_id=parse_key(key_id).versionless_id if key_id else None,
        reason=reason,
        not_replayed=not_replayed,
    )


def failing_targets(run: dict[str, Any] | None) -> list[str]:
    """`name: ErrorCode` for each target a run failed on, or the run's own error."""
    if not run or run.get("status") != "failed":
        return []
    failed = [
        f"{step['target'].rsplit('/', 1)[-1]}: {step.get('errorCode') or step.get('error') or 'failed'}"
        for step in run.get("steps", [])
        if step.get("outcome") == "failed" and step.get("target")
    ]
    return failed or [str(run.get("error") or run.get("message") or "failed")]


def last_replay_failures(service: Service, items: list[FailedItem]) -> dict[str, list[str]]:
    """For items whose last replay failed: the targets it failed on, with their error codes."""
    failures = {}
    for item in items:
        run_id = (item.replayed or {}).get("RunId")
        if run_id and item.replay_outcome not in ("succeeded", "queued", "running"):
            found = failing_targets(service.runs.get(run_id))
            if found:
                failures[item.item_id] = found
    return failures


def _items_data(items: list[FailedItem], failures: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [{**item.to_dict(), "lastReplayFailures": failures.get(item.item_id, [])} for item in items]


@click.group()
@output_options
def deadletters() -> None:
    """Failed work: Event Grid dead letters and poison-queue requests."""


@deadletters.command("list")
@click.option("--since", help="ISO 8601 time.")
@click.option("--until", help="ISO 8601 time.")
@click.option("--key", "key_id", help="Only items for this key (versionless id).")
@click.option("--reason", help="Only items whose reason, cause or error contains this text.")
@click.option(
    "--not-replayed",
    is_flag=True,
    help="Only items replay would still take: never replayed, or the last replay failed; not discarded.",
)
@output_options
@click.pass_obj
def deadletters_list(
    obj: Context,
    since: str | None,
    until: str | None,
    key_id: str | None,
    reason: str | None,
    not_replayed: bool,
) -> None:
    """Dead-lettered events and poison requests, oldest first, with why they failed.
    `deadletters show ID` gives one in full; ID is the `id` column (any unique prefix)."""
    from rotation.doors.replay import list_failed

    selection = _selection(since, until, key_id, reason=reason, not_replayed=not_replayed)
    with err.status("reading dead letters and the poison queue…"):
        items = list_failed(obj.service, selection)
        failures = last_replay_failures(obj.service, items)
    emit(obj, _items_data(items, failures), lambda: print_items(items, failures))


def _one_item(service: Service, text: str) -> FailedItem:  # noqa: RET503 - fail() exits
    """The one failed item ID names (its id, event id or request id, or a unique prefix)."""
    from rotation.doors.replay import Selection, list_failed, pick

    with err.status("reading dead letters and the poison queue…"):
        found = pick(list_failed(service, Selection()), text)
    if len(found) == 1:
        return found[0]
    if not found:
        fail(EXIT_USAGE, f"no failed item {text} (see rotation deadletters list)")
    fail(
        EXIT_USAGE, f"{text} names {len(found)} items, give more of it: {', '.join(i.handle for i in found)}"
    )


@deadletters.command("show")
@click.argument("item_id", metavar="ID")
@output_options
@click.pass_obj
def deadletters_show(obj: Context, item_id: str) -> None:
    """One failed item in full: the whole cause, its run, and the command that replays it."""
    service = obj.service
    item = _one_item(service, item_id)
    failures = last_replay_failures(service, [item]).get(item.item_id, [])
    data = {**item.to_dict(), "lastReplayFailures": failures, "replayCommand": command_to_replay(item)}
    emit(obj, data, lambda: print_item(data))


def command_to_replay(item: FailedItem) -> str | None:
    """What replays this item and nothing else (None: it cannot be replayed)."""
    if not item.replayable:
        return None
    again = " --force" if item.replayed and not item.awaiting_replay else ""
    return f"rotation replay --event-id {item.event_id or item.request_id} --yes{again}"


@deadletters.command("discard")
@click.argument("item_id", metavar="ID")
@click.option("--reason", required=True, help="Why it can never succeed (audited).")
@output_options
@click.pass_obj
def deadletters_discard(obj: Context, item_id: str, reason: str) -> None:
    """Set aside an item that can never succeed: audited, marked in the list, left out of replay."""
    from rotation.doors.replay import DiscardRefused, discard

    service = obj.service
    item = _one_item(service, item_id)
    try:
        discard(service, item, operator=operator(), reason=reason)
    except DiscardRefused as exc:
        fail(EXIT_USAGE, str(exc))
    data = {"id": item.item_id, "handle": item.handle, "discarded": True, "reason": " ".join(reason.split())}
    emit(obj, data, lambda: out.print(f"discarded {item.handle}: {data['reason']}", highlight=False))


def _unmatched(ids: tuple[str, ...], items: list[FailedItem]) -> list[str]:
    """The --event-id values that name no listed item."""
    from rotation.doors.replay import pick

    return sorted({i for i in ids if not pick(items, i)})


def _picked(items: list[FailedItem], ids: tuple[str, ...]) -> list[FailedItem]:
    """The items the ids name (event or request id, or a unique prefix as the list shows it),
    in the listed order; exit 2 for a prefix that names several."""
    from rotation.doors.replay import pick

    chosen: set[str] = set()
    for text in ids:
        found = pick(items, text)
        if len({i.handle for i in found}) > 1:  # one event in two dead-letter blobs is one choice
            names = ", ".join(sorted({i.handle for i in found}))
            fail(EXIT_USAGE, f"{text} names {len(found)} items, give more of it: {names}")
        chosen |= {i.item_id for i in found}
    return [item for item in items if item.item_id in chosen]


# what Ctrl-C says: the run under way closes `interrupted`, no further item starts
_STOPPING = "finishing the item under way (its writes get their grace), starting no more"


@click.command("replay")
@click.option("--since", help="ISO 8601 time.")
@click.option("--until", help="ISO 8601 time.")
@click.option(
    "--event-id", "event_ids", multiple=True, help="Only these event (or request) ids; a unique prefix works."
)
@click.option("--key", "key_id", help="Only items for this key (versionless id).")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; write nothing.")
@click.option("--force", is_flag=True, help="Replay items that were already replayed.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output_options
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
    from rotation.doors.replay import ReplayOutcome, list_failed, replay
    from rotation.doors.worker import continue_later
    from rotation.run.shardrun import shard_ended
    from rotation.storage.fence import hold

    service = obj.service if dry_run else obj.azure
    selection = _selection(since, until, key_id)  # the ids are picked from what it lists
    with err.status("reading dead letters and the poison queue…"):
        items = list_failed(service, selection, move=not dry_run)
    items = _picked(items, event_ids) if event_ids else items
    _say_what_matched(obj, event_ids, items)
    if obj.for_people:
        print_items(items, last_replay_failures(service, items))
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            fail(EXIT_USAGE, "refusing to replay without confirmation: pass --yes")
        click.confirm(f"Replay {len(items)} item(s)?", abort=True, err=True)
    results: dict[str, RunResult] = {}

    stop = Stop()  # Ctrl-C: the run under way closes `interrupted`, no further item starts

    def run(request: RotationRequest) -> RunResult:
        shard = request.shard  # a shard: its parent's lease while its fence holds, else the key's
        held = hold(service.ledger, request.key, shard.parent_run_id, shard.fence) if shard else None
        lease = held or take_lease(service, request)
        try:
            results[request.request_id] = service.reconciler.run(request, lease=lease, stop=stop)
        finally:
            lease.release()
        if shard is not None:
            shard_ended(service.shards, request, results[request.request_id], 1)
        continue_later(service, request, results[request.request_id])  # a soak: the queue carries on
        return results[request.request_id]

    def failures_of(outcome: ReplayOutcome) -> list[str]:
        result = results.get(outcome.run_id or "")
        return failing_targets(result.to_dict()) if result else []

    def show(outcome: ReplayOutcome) -> None:
        if obj.for_people:
            print_replay_outcome(outcome, failures_of(outcome))

    with signals_ask(stop, stopping_teller(_STOPPING)):
        outcomes = replay(
            service,
            items,
            operator=operator(),
            dry_run=dry_run,
            force=force,
            run=run,
            progress=show,
            stop=stop,
        )
    data = [o.to_dict() | {"failures": failures_of(o)} for o in outcomes]
    emit(obj, data, lambda: None)  # the table was printed item by item
    if stop.asked:
        err.print(
            f"replay stopped ({stop.reason}): {len(items) - len(outcomes)} of {len(items)} item(s) not started; "
            "run replay again to take them",
            highlight=False,
        )
    codes = {o.exit_code for o in outcomes} | ({INTERRUPTED_EXIT} if stop.asked else set())
    # the worst one wins; an interrupted run (or replay) is 130 when nothing worse happened
    for code in (EXIT_UNREACHABLE, EXIT_FAILED, EXIT_USAGE, EXIT_NEEDS_PERSON, INTERRUPTED_EXIT):
        if code in codes:
            sys.exit(code)
    sys.exit(EXIT_OK)


def _say_what_matched(obj: Context, event_ids: tuple[str, ...], items: list[FailedItem]) -> None:
    """Ids that matched nothing: a warning, or exit 2 when none matched; exit 0 when there is
    nothing to replay at all."""
    unmatched = _unmatched(event_ids, items)
    if event_ids and len(unmatched) == len(set(event_ids)):
        fail(EXIT_USAGE, f"no failed item matched the given ids: {', '.join(unmatched)}")
    if unmatched:
        err.print(f"[yellow]no failed item matched:[/] {', '.join(unmatched)}", highlight=False)
    if not items:
        if obj.for_people:
            out.print("[green]nothing to replay[/]")
        else:
            emit(obj, [], lambda: None)
        sys.exit(EXIT_OK)
