"""A sharded run whose closing shard dies between its mark and the close (issue 27 item 2's loose
end): the instance dies with the message undeleted, so the queue delivers it again, or poisons
it; the parent must still close, exactly once, with its totals. The crash is injected in the
product's seam (the shard book the service composes), through the queue trigger with real
azure.functions.QueueMessage objects against Azurite and the emulator."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner

import function_app
from devstack.functions_host import timer_request
from rotation.doors.cli import main
from rotation.model.ids import parse_key_id
from rotation.model.request import RotationRequest, Shard
from rotation.run.shardrun import report
from rotation.storage.shardbook import CLAIM_SECONDS, OPEN_PARTITION, PENDING, Marked, ShardBook, ShardEntry
from tests import scenarios as s
from tests.integration.cli_support import KEY, run
from tests.integration.test_shards import body_of, deliver, estate, moved, records, rotation, start, take


class InstanceDied(Exception):
    """What the queue sees of an instance that died: the invocation ended, the message stays."""


class DyingBook(ShardBook):
    """The shard book, dying `times` times at `where`: "marked" (the last shard's mark just
    landed), "claim" (any closer about to claim the close) or "closed" (the run-finished record
    written, the run record not)."""

    def __init__(self, book: ShardBook, where: str, times: int) -> None:
        super().__init__(book.table)
        self.where, self.times = where, times

    def _maybe_die(self, where: str) -> None:
        if self.where == where and self.times > 0:
            self.times -= 1
            raise InstanceDied(f"the instance died at {where}")

    def mark(self, parent_run_id: str, index: int, *args: Any, **kwargs: Any) -> Marked:
        marked = super().mark(parent_run_id, index, *args, **kwargs)
        if marked.changed and PENDING not in marked.marks:
            self._maybe_die("marked")
        return marked

    def claim_close(self, parent_run_id: str, closer: str, now: datetime) -> str | None:
        self._maybe_die("claim")
        return super().claim_close(parent_run_id, closer, now)

    def closed(self, parent_run_id: str, *args: Any) -> None:
        self._maybe_die("closed")
        super().closed(parent_run_id, *args)


def dying(stack: Any, where: str, times: int = 1) -> DyingBook:
    service = stack.service()
    book = DyingBook(service.shards.book, where, times)
    service.shards = replace(service.shards, book=book)  # the seam: the book the service composes
    return book


def closes(stack: Any, run_id: str) -> list[dict[str, Any]]:
    return [r for r in records(stack, run_id) if r["kind"] == "run-finished"]


def assert_closed_once(stack: Any, run_id: str, targets: list[str], closer: str) -> None:
    done = rotation(run_id)
    assert done["status"] == "succeeded" and done["summary"] == {"verified": 6}, done
    [finished] = closes(stack, run_id)
    assert finished["outcome"] == "succeeded" and finished["detail"]["summary"] == {"verified": 6}
    assert finished["detail"]["marks"] == "sss" and finished["detail"]["closedBy"] == closer
    assert sorted(c["path"] for c in stack.writes("PATCH")) == sorted(targets)  # each target once
    assert moved(stack) == set(targets)
    assert stack.service().ledger.holder(parse_key_id(KEY)) is None  # the parent's lease is released
    assert run_id not in stack.service().shards.book.left_open()  # the sweep has nothing to look at
    assert run("audit", "verify").exit_code == 0


def test_the_closing_shard_dies_after_its_mark_and_its_redelivery_closes_the_run(stack) -> None:
    targets = estate(stack)
    run_id = start(stack)
    dying(stack, "marked")
    dispatcher = stack.dispatcher(function_app.run_rotation)
    stats = dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    assert [type(i.error) for i in stats.failures] == [InstanceDied], [repr(i.error) for i in stats.failures]
    [died] = stats.failures
    assert stats.poisoned == []
    again = [i for i in stats.invocations if i.message_id == died.message_id and i.error is None]
    assert [i.dequeue_count for i in again] == [2]  # the queue delivered it again: that closed the run
    closer = next(r for r in records(stack, run_id) if r["kind"] == "run-finished")["detail"]["closedBy"]
    assert_closed_once(stack, run_id, targets, closer)
    shard_trail = [r["kind"] for r in records(stack, closer)]
    assert shard_trail.count("run-finished") == 1  # the redelivery ran nothing again


def test_a_closer_that_dies_inside_the_close_is_finished_by_its_redelivery_without_a_second_record(
    stack,
) -> None:
    targets = estate(stack)
    run_id = start(stack)
    dying(stack, "closed")  # run-finished is in the trail, the run record still says sharded
    dispatcher = stack.dispatcher(function_app.run_rotation)
    stats = dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    [died] = stats.failures
    assert isinstance(died.error, InstanceDied)
    closer = next(r for r in records(stack, run_id) if r["kind"] == "run-finished")["detail"]["closedBy"]
    assert_closed_once(stack, run_id, targets, closer)


def test_a_later_delivery_of_another_shard_closes_what_the_dead_closer_left(stack) -> None:
    targets = estate(stack)
    run_id = start(stack)
    [parent] = take(stack, 1)
    deliver(parent)
    first, second, last = take(stack, 3)
    deliver(first)
    deliver(second)
    dying(stack, "marked")
    try:
        deliver(last)
    except InstanceDied:
        pass  # the message stays taken (invisible): the queue would deliver it later
    else:
        raise AssertionError("the closing shard did not die")
    assert rotation(run_id)["status"] == "sharded"
    verified = run("audit", "verify")
    assert (
        verified.exit_code == 4
        and "all shards ended, the close is missing (the sweep closes it)"
        in " ".join(verified.output.split())
    )
    deliver(first)  # a duplicate delivery of an ended shard: runs nothing, closes the run
    assert_closed_once(stack, run_id, targets, body_of(first)["requestId"])
    deliver(last)  # and the dead closer's own message, delivered at last: nothing more
    assert len(closes(stack, run_id)) == 1


def left_sharded(stack: Any, run_id: str) -> None:
    """The run's shards all run; its closer dies at every delivery, so the queue poisons it."""
    dying(stack, "claim", times=2)
    dispatcher = stack.dispatcher(function_app.run_rotation, max_dequeue_count=2)
    stats = dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    assert len(stats.poisoned) == 1  # the closing shard died twice: on the poison queue
    assert rotation(run_id)["status"] == "sharded"
    assert stack.service().shards.book.left_open() == [run_id]


def test_a_replay_of_the_poisoned_closing_shard_closes_the_run(stack) -> None:
    targets = estate(stack)
    run_id = start(stack)
    left_sharded(stack, run_id)
    stack.admin.clear_calls()
    replayed = run("replay", "--yes")
    assert replayed.exit_code == 0, replayed.output
    assert stack.writes("PATCH") == []  # its targets were moved: nothing written again
    [finished] = closes(stack, run_id)
    assert finished["detail"]["summary"] == {"verified": 6} and finished["detail"]["marks"] == "sss"
    assert rotation(run_id)["status"] == "succeeded" and moved(stack) == set(targets)
    assert run("audit", "verify").exit_code == 0


def test_a_run_left_sharded_after_its_closer_was_poisoned_is_closed_by_the_sweep(stack, caplog) -> None:
    targets = estate(stack)
    run_id = start(stack)
    left_sharded(stack, run_id)
    with caplog.at_level(logging.WARNING, logger="rotation.functions"):
        function_app.sweep_drift(timer_request())
    assert f"sweep closed sharded run(s) left open: {run_id}" in caplog.text
    [sweep_id] = {
        r["runId"] for r in stack.service().audit.query(top=500)[0] if r["kind"] == "sweep-finished"
    }
    assert_closed_once(stack, run_id, targets, f"sweep/{sweep_id}")
    [noted] = [r for r in records(stack, sweep_id) if r["kind"] == "sharded-run-closed"]
    assert noted["outcome"] == "closed" and noted["detail"] == {"runId": run_id}
    replayed = run("replay", "--yes")  # the poisoned closing shard, replayed: closed already
    assert replayed.exit_code == 0, replayed.output
    assert len(closes(stack, run_id)) == 1 and rotation(run_id)["status"] == "succeeded"
    book = stack.service().shards.book
    book.table.upsert_entity({"PartitionKey": OPEN_PARTITION, "RowKey": run_id})  # as if the closer
    shown = CliRunner().invoke(main, ["-o", "json", "sweep"])  # died before it took the run off
    assert json.loads(shown.output)["closedRuns"] == []  # nothing left to close
    assert book.left_open() == [] and len(closes(stack, run_id)) == 1  # the closed run is taken off


def test_the_sweep_says_which_runs_it_closed_in_its_table_and_json(stack) -> None:
    for output in (["-o", "json"], []):
        estate(stack)  # every registry back on the old version: the next run shards again
        run_id = start(stack)
        left_sharded(stack, run_id)
        shown = CliRunner().invoke(main, [*output, "sweep"])
        assert shown.exit_code == 0, shown.output
        if output:
            assert json.loads(shown.output)["closedRuns"] == [run_id]
        else:
            assert f"closed sharded run {run_id}: every shard had ended" in shown.output
        assert rotation(run_id)["status"] == "succeeded"


def test_a_close_is_claimed_once_and_a_dead_claim_is_taken_over_only_when_stale(stack) -> None:
    book = stack.service().shards.book
    parent = "6f2c1d1e-1111-4a4a-8b8b-000000000042"
    book.open(parent, [ShardEntry(i, f"run-{i}", s.SUB_A, 1) for i in range(1, 13)], fence=3)
    now = datetime.now(UTC)
    assert book.claim_close(parent, "early", now) is None  # no shard has ended
    for i in range(1, 13):
        book.mark(parent, i, "succeeded", 3)
    with ThreadPoolExecutor(max_workers=12) as pool:
        claims = list(pool.map(lambda i: book.claim_close(parent, f"closer-{i}", now), range(12)))
    [winner] = [f"closer-{i}" for i, c in enumerate(claims) if c is not None]
    assert claims.count("s" * 12) == 1
    assert book.claim_close(parent, "other", now + timedelta(seconds=CLAIM_SECONDS - 1)) is None
    assert book.claim_close(parent, winner, now + timedelta(seconds=1)) == "s" * 12  # its redelivery
    stale = now + timedelta(seconds=CLAIM_SECONDS + 2)
    assert book.claim_close(parent, "sweep/1", stale) == "s" * 12  # the claimer died: taken over
    book.closed(parent, "succeeded", {"verified": 12}, {}, 0, "sweep/1", "s" * 12)
    assert book.claim_close(parent, "late", stale + timedelta(hours=1)) is None  # closed: nothing due


def test_a_replayed_shard_that_changes_its_outcome_closes_the_run_again_with_the_same_totals(stack) -> None:
    estate(stack)
    run_id = start(stack)
    dispatcher = stack.dispatcher(function_app.run_rotation)
    dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    assert rotation(run_id)["summary"] == {"verified": 6}
    shard = next(r for r in rotation(run_id)["shards"] if r["shard"] == 1)
    request = RotationRequest(
        KEY, "replay", "me", request_id=shard["runId"], shard=Shard(run_id, 1, 3, 1)
    )  # its replay ended needing a person this time, having verified the same two targets
    assert report(stack.service().shards, request, "needs-attention", {"verified": 2})
    again = rotation(run_id)
    assert again["status"] == "needs-attention" and again["summary"] == {"verified": 6}
    assert [c["detail"]["marks"][0] for c in closes(stack, run_id)] == ["s", "n"]
