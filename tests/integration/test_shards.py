"""A key's run sharded over instances (issue 27 item 2), through the doors: the HTTP route queues
the run, the queue trigger (`function_app.run_rotation` with real azure.functions.QueueMessage
objects) runs the parent and its shards against Azurite and the emulator, in whatever order
the test takes them off the queue, as instances would."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
from azure.storage.queue import QueueClient

import function_app
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.run.submit import submit
from rotation.storage.fence import hold
from rotation.storage.ledger import Lease, Ledger
from rotation.storage.shardbook import ShardEntry
from tests import scenarios as s
from tests.integration.cli_support import KEY, NEW, OLD, load_estate, run
from tests.support.http import call

# 4 registries in subscription A, 2 in B; at most 2 targets a shard: A in two shards, B in one.
NAMES = {"a0": s.SUB_A, "a1": s.SUB_A, "a2": s.SUB_A, "a3": s.SUB_A, "b0": s.SUB_B, "b1": s.SUB_B}


def estate(stack: Any) -> list[str]:
    registries = [s.registry(name, s.key_id("acr-cmk", OLD), sub=sub) for name, sub in NAMES.items()]
    load_estate(stack, registries)
    stack.set(ROTATION_SHARD_THRESHOLD="2")
    return [r["id"] for r in registries]


def start(stack: Any) -> str:
    status, body, _ = call(function_app.start_rotation, "POST", "/api/rotations", {"keyId": KEY})
    assert status == 202
    return body["runId"]


def take(stack: Any, count: int) -> list[Any]:
    """Take `count` messages off the queue (invisible for the test's length), as instances do."""
    queue = QueueClient.from_connection_string(stack.storage, "rotation-requests")
    taken = list(queue.receive_messages(max_messages=32, visibility_timeout=600))
    assert len(taken) == count, [json.loads(base64.b64decode(m.content)) for m in taken]
    return taken


def deliver(message: Any) -> None:
    body = base64.b64decode(message.content)
    function_app.run_rotation(func.QueueMessage(id=message.id, body=body))


def body_of(message: Any) -> dict[str, Any]:
    return json.loads(base64.b64decode(message.content))


def rotation(run_id: str) -> dict[str, Any]:
    status, body, _ = call(
        function_app.get_rotation, "GET", f"/api/rotations/{run_id}", route_params={"runId": run_id}
    )
    assert status == 200
    return body


def records(stack: Any, run_id: str) -> list[dict[str, Any]]:
    found, _ = stack.service().audit.query(run=run_id, top=1000)
    return sorted(found, key=lambda r: r["seq"])


def moved(stack: Any) -> set[str]:
    return {r["id"] for r in stack.admin.state()["registries"] if r["keyId"].endswith(NEW)}


def test_a_run_over_the_threshold_is_sharded_and_the_last_shard_closes_it_once(stack) -> None:
    targets = estate(stack)
    run_id = start(stack)
    [parent] = take(stack, 1)
    deliver(parent)
    assert stack.writes("PATCH") == []  # the parent planned and handed out; it wrote nothing
    sharded = rotation(run_id)
    assert sharded["status"] == "sharded" and sharded["shards"] and len(sharded["shards"]) == 3
    shards = take(stack, 3)
    requests = [body_of(m) for m in shards]
    assert sorted((r["shard"], r["shards"], r["parentRunId"]) for r in requests) == [
        (1, 3, run_id),
        (2, 3, run_id),
        (3, 3, run_id),
    ]
    assert sorted(len(r["targets"]) for r in requests) == [2, 2, 2]
    assert {r["fence"] for r in requests} == {1}  # the key's first lease
    for message in reversed(shards):  # any order
        deliver(message)
    deliver(shards[0])  # and one delivered twice
    paths = sorted(c["path"] for c in stack.writes("PATCH"))
    assert paths == sorted(targets) and moved(stack) == set(targets)  # each target once
    done = rotation(run_id)
    assert done["status"] == "succeeded" and done["summary"] == {"verified": 6}
    assert all(sh["status"] == "succeeded" for sh in done["shards"])
    trail = records(stack, run_id)
    assert [r["kind"] for r in trail].count("run-finished") == 1  # closed once
    assert next(r for r in trail if r["kind"] == "run-sharded")["detail"]["shards"] == 3
    first = records(stack, requests[0]["requestId"])[0]
    assert first["kind"] == "run-started" and first["detail"]["parentRunId"] == run_id
    assert stack.service().ledger.holder(parse_key_id(KEY)) is None  # the closing shard released it
    assert run("audit", "verify").exit_code == 0


def test_a_shard_whose_fence_is_stale_stops_with_nothing_written(stack) -> None:
    estate(stack)
    run_id = start(stack)
    [parent] = take(stack, 1)
    deliver(parent)
    shards = take(stack, 3)
    # The parent's lease moves on: freed, then taken by another run (a new generation).
    ledger, key = stack.service().ledger, parse_key_id(KEY)
    row = ledger.lease_row(key)
    ledger.free(key, row.metadata["etag"], row["Generation"])
    other = ledger.acquire(key, owner="another-run/1")
    assert not isinstance(other, type(None)) and getattr(other, "generation", None) == 2
    for message in shards:
        deliver(message)
    assert stack.writes("PATCH") == [] and moved(stack) == set()
    fenced = records(stack, body_of(shards[0])["requestId"])
    assert [r["kind"] for r in fenced] == ["shard-fenced"] and fenced[0]["reason"] == "stale-fence"
    done = rotation(run_id)
    assert done["status"] == "interrupted" and {sh["status"] for sh in done["shards"]} == {"fenced"}
    assert ledger.holder(key)["Owner"] == "another-run/1"  # the other run's lease is left alone


def test_a_failed_shard_is_poisoned_and_replayed_alone(stack) -> None:
    targets = estate(stack)
    failing = s.registry_id("b1", s.SUB_B)
    stack.admin.add_fault(method="PATCH", pathRegex="registries/b1$", status=403)
    run_id = start(stack)
    dispatcher = stack.dispatcher(function_app.run_rotation, max_dequeue_count=2)
    stats = dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    assert len(stats.poisoned) == 1
    assert moved(stack) == set(targets) - {failing}
    waiting = rotation(run_id)
    assert waiting["status"] == "sharded"  # one shard has not ended: the run stays open
    assert sorted(sh["status"] for sh in waiting["shards"]) == [
        "failed (attempt 2)",
        "succeeded",
        "succeeded",
    ]
    verified = run("audit", "verify")
    assert verified.exit_code == 4 and "shard" in verified.output and run_id in verified.output
    stack.admin.clear_faults()
    stack.admin.clear_calls()
    replayed = run("replay", "--yes")
    assert replayed.exit_code == 0, replayed.output
    assert [c["path"] for c in stack.writes("PATCH")] == [failing]  # that shard alone
    assert moved(stack) == set(targets)
    done = rotation(run_id)
    # the replay's own summary: b0 (moved by the shard's first attempt) was already current
    assert done["status"] == "succeeded" and done["summary"] == {"verified": 5, "skipped": 1}
    assert run("audit", "verify").exit_code == 0


def test_the_cli_says_the_run_was_sharded_and_how_many_shards(stack) -> None:
    targets = estate(stack)
    shown = run("rotate", KEY, "--yes", "-o", "json")
    assert shown.exit_code == 0 and json.loads(shown.output)["shards"] == 3
    assert json.loads(shown.output)["status"] == "sharded"
    dispatcher = stack.dispatcher(function_app.run_rotation)
    dispatcher.run_until_idle(timeout=120)  # the instances take the shards
    dispatcher.close()
    assert moved(stack) == set(targets)
    load_estate(stack, [s.registry(n, s.key_id("acr-cmk", OLD), sub=sub) for n, sub in NAMES.items()])
    table = run("rotate", KEY, "--yes")
    assert table.exit_code == 0, table.output
    assert (
        "status sharded" in table.output and "sharded: 3 shard(s) queued on rotation-requests" in table.output
    )


def test_the_lease_generation_counts_every_acquisition(stack) -> None:
    service, key = stack.service(), parse_key_id(KEY)
    ledger = Ledger(service.ledger.table, lease_seconds=0)  # every lease expired at once
    first = ledger.acquire(key, "run-a/1")
    assert isinstance(first, Lease) and first.generation == 1
    first.release()
    assert ledger.holder(key) is None and (ledger.lease_row(key) or {})["Generation"] == 1  # freed, kept
    second = ledger.acquire(key, "run-b/1")
    assert isinstance(second, Lease) and second.generation == 2 and second.taken_over_from is None
    third = ledger.acquire(key, "run-c/1")  # run-b's lease expired: taken over
    assert isinstance(third, Lease) and third.generation == 3 and third.taken_over_from == "run-b/1"
    second.release()  # its ETag is stale: run-c's lease stays
    assert (ledger.holder(key) or {})["Owner"] == "run-c/1"


def test_shards_ending_at_once_are_each_counted_and_exactly_one_closes(stack) -> None:
    """The ETag-guarded marks against Azurite: 24 shards report from 24 threads at once (each
    twice, as a duplicate delivery would); every mark lands, one report closes the run."""
    book = stack.service().shards.book
    parent = "6f2c1d1e-1111-4a4a-8b8b-000000000024"
    book.open(parent, [ShardEntry(i, f"run-{i}", s.SUB_A, 1) for i in range(1, 25)], fence=5)
    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(
            pool.map(lambda i: book.mark(parent, i, "succeeded", 5), [*range(1, 25), *range(1, 25)])
        )
    assert sum(r.closes for r in results) == 1 and sum(r.changed for r in results) == 24
    assert (book.parent(parent) or {})["ShardMarks"] == "s" * 24
    assert not book.mark(parent, 3, "failed", 4).changed  # a shard of another fence marks nothing


def test_sibling_shards_renew_one_lease_until_another_run_takes_it(stack) -> None:
    service, key = stack.service(), parse_key_id(KEY)
    parent = "6f2c1d1e-1111-4a4a-8b8b-000000000031"
    ledger = Ledger(service.ledger.table, lease_seconds=0)  # expired at once: another run may take it
    taken = ledger.acquire(key, f"{parent}/attempt")
    assert isinstance(taken, Lease)
    one, two = hold(ledger, key, parent, taken.generation), hold(ledger, key, parent, taken.generation)
    assert one is not None and two is not None
    assert one.renew() and two.renew() and one.renew() and not one.lost  # the ETag moved, the lease did not
    assert hold(ledger, key, parent, taken.generation + 1) is None  # a fence it never had
    other = ledger.acquire(key, "another-run/1")
    assert isinstance(other, Lease) and other.generation == taken.generation + 1
    assert not two.renew() and two.lost  # the generation moved: the shard stops starting work
    assert hold(ledger, key, parent, taken.generation) is None


def test_a_sharded_event_run_marks_its_event_converged_when_it_closes(stack) -> None:
    estate(stack)
    service = stack.service()
    request = new_request(parse_key_id(KEY), "event", "eventgrid", event_id="evt-sharded-1")
    submit(service.requests_queue, service.runs, request)
    [parent] = take(stack, 1)
    deliver(parent)
    assert service.ledger.converged("evt-sharded-1") is None  # not while its shards run
    for message in take(stack, 3):
        deliver(message)
    assert (service.ledger.converged("evt-sharded-1") or {}).get("RunId") == request.request_id
