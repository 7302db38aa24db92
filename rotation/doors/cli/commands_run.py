"""`plan`, `rotate` and `sweep`: reconcile in-process, from this machine."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from rotation.doors.cli.context import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_NEEDS_PERSON,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Context,
    err,
    fail,
    operator,
    parse_key,
    parse_targets,
)
from rotation.doors.cli.output import emit, every_row, output_options
from rotation.doors.cli.progress import LeaseWait, phase, run_lines
from rotation.doors.cli.render import print_plan, print_result, print_sweep

if TYPE_CHECKING:
    from rotation.azure.discovery import Inventory
    from rotation.model.ids import KeyRef
    from rotation.model.request import RotationRequest
    from rotation.model.results import Plan, RunResult
    from rotation.run.stopping import Stop
    from rotation.service import Service
    from rotation.storage.ledger import Lease

# `rotate` runs with the consumers its preview found when the preview is at most this old (a
# prompt answered, a lease waited for): the run reads each target through ARM before writing it,
# so an older list could only miss a consumer added since, which the next sweep finds.
PREVIEW_FRESH_SECONDS = 60.0


def _allowed(service: Service, key: KeyRef, targets: tuple[str, ...] | None) -> None:
    """Refuse, naming the setting, before anything is read: the HTTP door answers 403 here."""
    if not service.settings.vault_allowed(key.vault_host):
        fail(EXIT_USAGE, f"vault {key.vault_host} is not in ROTATION_ALLOWED_VAULTS")
    for target in targets or ():
        subscription = target.split("/")[2].lower()
        if subscription not in service.settings.subscriptions:
            fail(EXIT_USAGE, f"{target} is in subscription {subscription}, not in ROTATION_SUBSCRIPTIONS")


def _plan(service: Service, key: KeyRef, targets: tuple[str, ...] | None) -> tuple[Plan, Inventory]:
    """The plan and the consumers it found, or exit 2 for a key that does not exist or a named
    target that does not use it."""
    from rotation.run.gather import Unreachable
    from rotation.run.planner import not_consumers_error

    try:
        plan, found = service.reconciler.preview(key, targets)
    except Unreachable as exc:
        fail(EXIT_USAGE if exc.info.status == 404 else EXIT_UNREACHABLE, str(exc))
    if strangers := not_consumers_error(plan):
        fail(EXIT_USAGE, strangers)
    return plan, found


@click.command()
@click.argument("key_id")
@click.option("--target", "targets", multiple=True, metavar="RESOURCE_ID", help="Limit to these resources.")
@every_row
@output_options
@click.pass_obj
def plan(obj: Context, key_id: str, targets: tuple[str, ...], every: bool) -> None:
    """Show what rotating KEY_ID would touch (read only)."""
    key = parse_key(key_id)
    target_ids = parse_targets(targets)
    _allowed(obj.service, key, target_ids)  # before signing in: a refusal needs no token
    service = obj.azure
    with phase("reading Key Vault and ARM…", obj.for_people):
        result, _ = _plan(service, key, target_ids)
    emit(obj, result.to_dict(), lambda: print_plan(result, every=every))
    sys.exit(plan_exit_code(result))


def plan_exit_code(result: Plan) -> int:
    from rotation.model.decisions import NEEDS_PERSON

    if any(e["unreachable"] for e in result.discovery_errors):
        return EXIT_UNREACHABLE
    needs_person = result.discovery_errors or any(s.action in NEEDS_PERSON for s in result.steps)
    return EXIT_NEEDS_PERSON if needs_person else EXIT_OK


@click.command()
@click.argument("key_id")
@click.option("--dry-run", is_flag=True, help="Plan and audit, change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--target", "targets", multiple=True, metavar="RESOURCE_ID", help="Limit to these resources.")
@every_row
@output_options
@click.pass_obj
def rotate(
    obj: Context, key_id: str, dry_run: bool, yes: bool, targets: tuple[str, ...], every: bool
) -> None:
    """Move every consumer of KEY_ID to its desired version, now, from this machine.

    A KEY_ID with a version asserts that version is the desired one.
    """
    from rotation.doors.worker import continue_later
    from rotation.model.decisions import UPDATE
    from rotation.model.request import new_request

    key = parse_key(key_id)
    target_ids = parse_targets(targets)
    _allowed(obj.service, key, target_ids)  # before signing in: a refusal needs no token
    service = obj.azure
    with phase("reading Key Vault and ARM…", obj.for_people):
        preview, found = _plan(service, key, target_ids)
    previewed = time.monotonic()
    if key.version and preview.desired_version != key.version:
        fail(
            EXIT_USAGE,
            f"{key.version} is not the desired version of {key.versionless_id} "
            f"(desired: {preview.desired_version or 'none usable'})",
        )
    updates = sum(1 for s in preview.steps if s.action == UPDATE)
    if not dry_run and updates and not yes:
        if obj.for_people:
            print_plan(preview, every=every)
        if not sys.stdin.isatty():
            fail(EXIT_USAGE, "refusing to change resources without confirmation: pass --yes")
        click.confirm(f"Update {updates} resource(s) to {preview.desired_version}?", abort=True, err=True)
    request = new_request(
        key, "cli", operator(), dry_run=dry_run, targets=target_ids, event_version=key.version
    )
    lease = None if dry_run else take_lease(service, request)
    listed = _reusable(service, found, updates, time.monotonic() - previewed, target_ids)
    result = _run_interruptible(
        service, request, updates if not dry_run else 0, obj.for_people, lease, listed
    )
    continue_later(service, request, result)  # canary waves soaking: the queue carries on
    emit(obj, result.to_dict(), lambda: print_result(result, every=every))
    if (interruption := result.interruption()) is not None:
        err.print(
            f"run {result.run_id} interrupted ({interruption['reason']}): {interruption['moved']} moved, "
            f"{interruption['inFlight']} in flight, {interruption['notStarted']} not started, "
            f"{interruption['failed']} failed; run it again to finish",
            highlight=False,
        )
    sys.exit(result.exit_code)


def _reusable(
    service: Service, found: Inventory, updates: int, age: float, targets: tuple[str, ...] | None
) -> Inventory | None:
    """The preview's consumers, for the run to take instead of listing again, when that is safe
    and cheaper: the preview is fresh and read everything, and the reads of the targets before
    their writes cost no more than the lists saved (named targets are read either way; Resource
    Graph's rows are read before their writes anyway; otherwise at most one updated target per
    kind and subscription, each listed with at least one page)."""
    from rotation.azure.discovery import uses_graph

    if age > PREVIEW_FRESH_SECONDS or found.errors:
        return None
    subscriptions = len(service.settings.subscriptions)
    if targets is not None or uses_graph(service.settings.discovery, subscriptions):
        return found
    return found if updates <= subscriptions * len(service.reconciler.kinds) else None


def _run_interruptible(
    service: Service,
    request: RotationRequest,
    updates: int,
    show: bool,
    lease: Lease | None,
    listed: Inventory | None = None,
) -> RunResult:
    """Ctrl-C or SIGTERM closes the run as `interrupted` (run/stopping.py); a third signal
    leaves at once, the lease kept until it expires so the next run records what this one moved."""
    from rotation.run.stopping import Stop, signals_ask

    stop = Stop()
    tell = stopping_teller(
        f"starting no more writes; waiting up to {stop.grace_seconds:.0f}s for the writes under way"
    )
    abandoned = False
    try:
        with signals_ask(stop, tell):
            return _run_with_progress(service, request, updates, show, lease, stop, listed)
    except KeyboardInterrupt:
        abandoned = True
        fail(
            EXIT_ABORTED,
            f"run {request.request_id} abandoned before it was closed; the next run of "
            f"{request.key_id} records the moves it made",
        )
    finally:
        if lease is not None and not abandoned:
            lease.release()


def stopping_teller(first: str) -> Callable[[str, bool], None]:
    """What a command says on Ctrl-C (or SIGTERM): `first` at the first signal, then that the
    writes under way are no longer waited for."""

    def tell(name: str, is_first: bool) -> None:
        if is_first:
            err.print(f"{name}: {first} (again: stop waiting)", highlight=False)
        else:
            err.print(f"{name}: not waiting; the writes under way are recorded as in flight", highlight=False)

    return tell


def take_lease(
    service: Service,
    request: RotationRequest,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Lease:
    """The key's lease for this run, waiting (within the time budget) while another run holds it;
    the wait is said on stderr as it starts, goes on and ends (progress.py)."""
    from rotation.storage.ledger import LeaseHeld, lease_owner

    deadline = clock() + service.settings.time_budget_seconds
    wait = LeaseWait(request.key_id, clock)
    while True:
        lease = service.ledger.acquire(request.key, owner=lease_owner(request.request_id))
        if not isinstance(lease, LeaseHeld):
            wait.ended(taken=True)
            return lease.keep_alive()
        if clock() + lease.seconds_left() > deadline:
            wait.ended(taken=False)
            fail(
                EXIT_FAILED,
                f"run {lease.owner} holds {request.key_id} until {lease.expires_at:%H:%M:%S} UTC; "
                "try again later",
            )
        with wait.held(lease.owner, lease.expires_at):
            sleep(min(lease.seconds_left() + 1, 10))


def _run_with_progress(
    service: Service,
    request: RotationRequest,
    updates: int,
    show: bool,
    lease: Lease | None,
    stop: Stop | None = None,
    listed: Inventory | None = None,
) -> RunResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rotation.model.decisions import UPDATE

    if not updates or not show:
        return service.reconciler.run(request, lease=lease, stop=stop, listed=listed)
    if lines := run_lines(updates):  # no terminal: a line every few seconds instead of a bar
        result = service.reconciler.run(request, progress=lines, lease=lease, stop=stop, listed=listed)
        lines.finish()
        return result
    columns = (TextColumn("updating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("update", total=updates)

        def advance(step: Any) -> None:
            if step.action == UPDATE:
                progress.advance(task)

        return service.reconciler.run(request, progress=advance, lease=lease, stop=stop, listed=listed)


@click.command("sweep")
@click.option("--dry-run", is_flag=True, help="Report what would be queued, queue nothing.")
@output_options
@click.pass_obj
def sweep_command(obj: Context, dry_run: bool) -> None:
    """Find keys whose consumers drifted or whose version nears expiry; queue one request each."""
    from rotation.estate.sweep import sweep

    service = obj.azure
    with phase("listing consumers across subscriptions…", obj.for_people):
        result = sweep(service, dry_run=dry_run, actor=operator())
    emit(obj, result.to_dict(), lambda: print_sweep(result), rows=[f.to_dict() for f in result.findings])
    for error in result.discovery_errors:
        err.print(
            f"[red]could not list {error.kind} in {error.scope}:[/] {error.error.summary()}", highlight=False
        )
    if result.unreachable:
        sys.exit(EXIT_UNREACHABLE)
    needs_person = result.discovery_errors or any(f.skipped for f in result.findings)
    sys.exit(EXIT_NEEDS_PERSON if needs_person else EXIT_OK)
