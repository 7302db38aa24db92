"""The audit is off the critical path (issue 15): the plan is durable before any write in a
constant number of storage calls whatever its length, step records are written behind, and a
transient storage error during a flush is retried without losing a record. Real Table and Blob
clients against Azurite; the faults are an azure-core pipeline policy (the supported way to add
one to a client), standing in for a connection Azurite reset."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient

from rotation.model.consumer import Consumer
from rotation.model.ids import KeyRef, ResourceId
from rotation.model.keystate import KeyState, VersionInfo
from rotation.model.request import new_request
from rotation.model.results import Plan, PlanStep, RunResult
from rotation.run.narrate import record_findings
from rotation.storage.audit import (
    ANCHOR_CONTAINER,
    AUDIT_TABLE,
    AuditStore,
    AuditTrail,
    AuditUnavailable,
    verify,
)
from tests.conftest import wipe_storage

KEY = KeyRef("contoso-cmk.vault.azure.net", "acr-cmk")
OLD, NEW = "a" * 32, "b" * 32
SUB = "00000000-0000-0000-0000-00000000000a"


class Counting(SansIOHTTPPolicy):
    """Counts the requests a client sends; `fail_batches` of them (Table batches) break like a
    connection reset while reading the answer."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_batches = 0

    def on_request(self, request: Any) -> None:
        http = request.http_request
        self.calls.append(f"{http.method} {http.url.split('?')[0].rsplit('/', 1)[-1]}")
        if http.url.split("?")[0].endswith("$batch") and self.fail_batches > 0:
            self.fail_batches -= 1
            raise ServiceResponseError("Connection reset by peer")


@pytest.fixture
def storage(azurite) -> tuple[AuditStore, Counting]:
    wipe_storage(azurite.connection_string)
    counter = Counting()
    table = TableClient.from_connection_string(
        azurite.connection_string, AUDIT_TABLE, per_call_policies=[counter], retry_total=0
    )
    anchors = ContainerClient.from_connection_string(
        azurite.connection_string, ANCHOR_CONTAINER, per_call_policies=[counter], retry_total=0
    )
    table.create_table()
    anchors.create_container()
    counter.calls.clear()
    return AuditStore(table, anchors), counter


def a_plan(steps: int) -> Plan:
    created = datetime(2026, 1, 1, tzinfo=UTC)  # a version always has one; this test never reads it
    old = VersionInfo(OLD, True, created, None, None, "RSA", ("wrapKey", "unwrapKey"))
    new = VersionInfo(NEW, True, created, None, None, "RSA", ("wrapKey", "unwrapKey"))
    state = KeyState(KEY, (old, new), NEW, new, None, "Recoverable+Purgeable")
    made = []
    for n in range(steps):
        target = ResourceId(SUB, "rg", "Microsoft.ContainerRegistry", "registries", f"reg{n}")
        consumer = Consumer("registry", target, KEY.with_version(OLD), "westeurope")
        made.append(PlanStep(str(target), "registry", "update", "stale", "move", OLD, NEW, consumer))
    return Plan(KEY, state, tuple(made))


def plan_recorded(store: AuditStore, counter: Counting, steps: int) -> tuple[AuditTrail, list[str]]:
    """A run's trail through its plan: the storage calls made from the plan's first record
    until the plan is durable (what stands between the run's start and its first write)."""
    request = new_request(KEY, "cli", "pytest", dry_run=True)  # a plan-step record per step
    trail = AuditTrail(  # no batch fills up here: the background flusher has its own test
        store, run_id=request.request_id, key=KEY, advance_key_head=True, flush_every=10**6
    )
    trail.record("run-started", source="cli")
    counter.calls.clear()
    record_findings(request, a_plan(steps), trail, RunResult(request.request_id, KEY.versionless_id, False))
    return trail, list(counter.calls)


def test_the_plan_is_durable_in_the_same_few_storage_calls_whatever_its_length(storage) -> None:
    store, counter = storage
    _, small = plan_recorded(store, counter, 3)
    trail, large = plan_recorded(store, counter, 450)
    # plan document, one batch of the records so far, the anchor, the key's head
    assert len(large) == len(small) <= 4
    assert trail.pending == 450  # the step records are written behind, not before a write
    anchor = store.latest_anchor(trail.run_id)
    assert anchor is not None and anchor["count"] == 2  # run-started and plan, pinned
    trail.flush()
    assert trail.pending == 0
    assert store.latest_anchor(trail.run_id)["count"] == trail.count
    checked, findings = verify(store)
    assert checked == 2 and findings == []


def test_verify_holds_the_plan_document_against_the_plan_record(storage) -> None:
    store, counter = storage
    trail, _ = plan_recorded(store, counter, 5)
    trail.flush()
    plan = next(r for r in store.run_records(trail.run_id, trail.partition) if r["kind"] == "plan")
    name = plan["detail"]["planDocument"]
    assert plan["detail"]["steps"] == 5
    # Only someone who can rewrite the immutable container could do this (Azurite can).
    store.anchors.upload_blob(name, b'{"steps": []}', overwrite=True)
    _, findings = verify(store)
    assert [(f.run_id, f.problem) for f in findings] == [(trail.run_id, "plan-document")]
    store.anchors.delete_blob(name)
    _, findings = verify(store)
    assert [f.problem for f in findings] == ["plan-document"] and "missing" in findings[0].detail


def test_a_reset_connection_during_a_flush_is_retried_and_nothing_is_lost(storage) -> None:
    store, counter = storage
    waits: list[float] = []
    trail = AuditTrail(store, run_id=str(uuid.uuid4()), key=KEY, sleep=waits.append)
    for n in range(150):
        trail.record("plan-step", target=f"t{n}")
    counter.fail_batches = 2
    trail.flush()
    assert len(waits) == 2 and all(w > 0 for w in waits)  # backed off, then written
    assert len(store.run_records(trail.run_id, trail.partition)) == 150
    assert verify(store)[1] == []


def test_an_outage_stops_the_run_keeping_every_record_for_a_later_flush(storage) -> None:
    store, counter = storage
    waits: list[float] = []
    trail = AuditTrail(store, run_id=str(uuid.uuid4()), key=KEY, retry_seconds=20, sleep=waits.append)
    for n in range(30):
        trail.record("plan-step", target=f"t{n}")
    counter.fail_batches = 10**6
    with pytest.raises(AuditUnavailable) as raised:
        trail.flush()
    assert raised.value.transient and sum(waits) < 20 and len(waits) >= 3
    assert trail.pending == 30 and store.latest_anchor(trail.run_id) is None
    counter.fail_batches = 0  # storage is back: the same trail (or a resumed run) writes them
    trail.record("run-finished")
    trail.flush()
    assert len(store.run_records(trail.run_id, trail.partition)) == 31
    assert verify(store)[1] == []


def test_full_batches_are_written_behind_the_run(storage) -> None:
    store, _ = storage
    trail = AuditTrail(store, run_id=str(uuid.uuid4()), key=KEY, flush_every=50)
    for n in range(120):
        trail.record("plan-step", target=f"t{n}")
    while (thread := trail._background) is not None:
        thread.join(timeout=30)
    assert trail.pending < 50  # written without anyone calling flush
    assert len(store.run_records(trail.run_id, trail.partition)) == 120 - trail.pending
    trail.flush()
    assert verify(store)[1] == []


def test_a_background_flush_that_fails_for_good_stops_the_next_record(storage) -> None:
    store, counter = storage
    trail = AuditTrail(store, key=KEY, flush_every=10, retry_seconds=0, sleep=lambda _: None)
    counter.fail_batches = 10**6
    for n in range(10):
        trail.record("plan-step", target=f"t{n}")
    thread = trail._background
    if thread is not None:
        thread.join(timeout=30)
    with pytest.raises(AuditUnavailable):
        trail.record("plan-step", target="t10")
    assert trail.pending == 10


# -- two writers of one run's chain (issue 22, item 1) ---------------------------------------------
def rows_of(store: AuditStore, trail: AuditTrail) -> list[tuple[int, str]]:
    return [(r["seq"], r["kind"]) for r in store.run_records(trail.run_id, trail.partition)]


def test_the_worker_writing_before_the_intake_flushes_keeps_one_chain(storage) -> None:
    """The sequence seen on the all-kinds estate, interleaved by hand: the intake records its two
    records, the worker opens the same run before the intake's flush and writes first."""
    store, _ = storage
    request = new_request(KEY, "event", "eventgrid:e1")
    intake = AuditTrail(store, run_id=request.request_id, key=KEY, opened=request.enqueued_at)
    intake.record("event-received")
    queued = intake.record("request-queued")
    worker = AuditTrail(store, run_id=request.request_id, key=KEY, opened=request.enqueued_at)
    worker.record("lease-waited")
    worker.flush()
    intake.flush()
    assert rows_of(store, intake) == [(0, "lease-waited"), (1, "event-received"), (2, "request-queued")]
    assert queued["seq"] == 2  # the caller's record shows where it ended up
    assert verify(store) == (1, [])


def test_the_intake_flushing_first_leaves_the_worker_to_rechain(storage) -> None:
    store, _ = storage
    request = new_request(KEY, "event", "eventgrid:e2")
    intake = AuditTrail(store, run_id=request.request_id, key=KEY, opened=request.enqueued_at)
    worker = AuditTrail(store, run_id=request.request_id, key=KEY, opened=request.enqueued_at)
    intake.record("event-received")
    worker.record("lease-waited")
    intake.record("request-queued")
    intake.flush()
    worker.flush()
    worker.record("run-started")  # the same trail goes on after its rebased flush
    worker.flush()
    assert [kind for _, kind in rows_of(store, intake)] == [
        "event-received",
        "request-queued",
        "lease-waited",
        "run-started",
    ]
    assert verify(store) == (1, [])
    later = AuditTrail(store, run_id=request.request_id, key=KEY)  # the next attempt continues it
    assert later.count == 4


class AfterFirstBatch(SansIOHTTPPolicy):
    """Runs `hook` once, when the first Table batch of this client has been answered: another
    writer appends between two transactions of one flush."""

    def __init__(self) -> None:
        self.hook: Any = None

    def on_response(self, request: Any, response: Any) -> None:
        if request.http_request.url.split("?")[0].endswith("$batch") and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()


def test_another_writer_between_two_transactions_of_one_flush(storage, azurite) -> None:
    store, _ = storage
    between = AfterFirstBatch()
    table = TableClient.from_connection_string(
        azurite.connection_string, AUDIT_TABLE, per_call_policies=[between]
    )
    racing = AuditStore(table, store.anchors)
    run_id = str(uuid.uuid4())
    first = AuditTrail(racing, run_id=run_id, key=KEY, flush_every=10**6)
    for n in range(150):  # two transactions: 99 records, then 51
        first.record("plan-step", target=f"t{n}")
    second = AuditTrail(store, run_id=run_id, key=KEY)

    def other_writer() -> None:
        second.record("lease-waited")
        second.flush()

    between.hook = other_writer
    first.flush()
    stored = rows_of(store, first)
    assert [seq for seq, _ in stored] == list(range(151))
    assert stored[99] == (99, "lease-waited")  # after the first transaction, before the rest
    assert verify(store) == (1, [])


def test_a_mangled_run_head_row_stops_the_trail_instead_of_chaining_from_it(storage) -> None:
    """Someone with table write sets the run's head Count to text: a writer must not number its
    records from it (it would write sequence numbers below zero)."""
    store, _ = storage
    run_id = str(uuid.uuid4())
    first = AuditTrail(store, run_id=run_id, key=KEY)
    first.record("event-received")
    first.flush()
    head = store.table.get_entity(first.partition, f"~run-{run_id}")
    head["Count"] = "many"
    store.table.upsert_entity(head)
    with pytest.raises(AuditUnavailable, match="malformed"):
        AuditTrail(store, run_id=run_id, key=KEY)
    assert [r["seq"] for r in store.run_records(run_id, first.partition)] == [0]
