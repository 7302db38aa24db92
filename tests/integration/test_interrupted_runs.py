"""Interrupted runs (issue 22 item 2, issue 21 item 3's ending): real signals to `python -m
rotation rotate KEY --yes` on the local stack, a hard kill and the run after it, the time budget
ending. Writes are made slow with the emulator's latency faults, and a signal is sent once the
emulator has answered N writes (its `GET /calls`), never after a fixed sleep."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import function_app
from rotation.model.ids import parse_key_id
from rotation.model.request import RotationRequest
from rotation.model.times import parse_iso
from rotation.storage.queue import encode
from rotation.storage.written import WrittenStore
from tests import scenarios as s
from tests.integration.cli_support import KEY, NEW, OLD, load_estate, run
from tests.integration.test_functions import call

ARM = "management.azure.com"


def estate(stack: Any, count: int, prefix: str = "reg") -> list[str]:
    registries = [s.registry(f"{prefix}{i:02d}", s.key_id("acr-cmk", OLD)) for i in range(count)]
    load_estate(stack, registries)
    stack.service()  # storage exists before the child runs
    return [r["id"] for r in registries]


def rotate_in_child(stack: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rotation", "rotate", KEY, "--yes", "-o", "json"],
        env=dict(os.environ),
        cwd=str(stack.repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def trigger_in_child(stack: Any, request: RotationRequest, message_id: str = "m1") -> subprocess.Popen[str]:
    """The queue trigger (`function_app.run_rotation`) handling `request` in a process of its
    own, as the Functions host runs it, so a test can signal or kill it."""
    code = (
        "import sys, azure.functions as func, function_app;"
        f"function_app.run_rotation(func.QueueMessage(id={message_id!r}, body=sys.argv[1].encode()))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, encode(request)],
        env=dict(os.environ),
        cwd=str(stack.repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_writes(stack: Any, child: subprocess.Popen[str], count: int) -> None:
    """Until the emulator has answered `count` PATCHes (each one is on the new version)."""
    deadline = time.monotonic() + 60
    while len(stack.writes("PATCH")) < count:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child never wrote"
        time.sleep(0.05)  # a real child process and the emulator: polled, no clock of ours moves them


def wait_for_lease_to_expire(stack: Any) -> None:
    """Until the key's lease, held by a killed run, has run out (ROTATION_LEASE_SECONDS)."""
    expires = parse_iso(stack.service().ledger.holder(parse_key_id(KEY))["ExpiresAt"])
    deadline = time.monotonic() + 30
    while datetime.now(UTC) <= expires:
        assert time.monotonic() < deadline
        time.sleep(0.2)  # a real lease in Azurite, expiring on the wall clock


def moved(stack: Any) -> set[str]:
    return {r["id"] for r in stack.admin.state()["registries"] if r["keyId"].endswith(NEW)}


def records(stack: Any, run_id: str) -> list[dict[str, Any]]:
    found, _ = stack.service().audit.query(run=run_id, top=2000)
    return sorted(found, key=lambda r: r["seq"])


def of_kind(found: list[dict[str, Any]], kind: str, **fields: Any) -> list[dict[str, Any]]:
    return [r for r in found if r["kind"] == kind and all(r.get(k) == v for k, v in fields.items())]


def test_ctrl_c_closes_the_run_interrupted_with_every_write_recorded(stack) -> None:
    stack.set(ROTATION_CONCURRENCY="2")
    targets = estate(stack, 12)
    slow = targets[0]  # its write is held while the other lane writes on, let go at Ctrl-C
    stack.admin.add_fault(method="PATCH", host=ARM, pathRegex="/registries/reg00$", latencyMs=60_000)
    stack.admin.add_fault(method="PATCH", host=ARM, latencyMs=300)
    child = rotate_in_child(stack)
    wait_for_writes(stack, child, 3)
    assert slow not in moved(stack)
    child.send_signal(signal.SIGINT)
    stack.admin.release_holds()  # the write under way ends inside the grace, whenever it began
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    result = json.loads(out)
    run_id, counts = result["runId"], result["interrupted"]
    assert result["status"] == "interrupted" and counts["reason"] == "SIGINT"
    # the writes under way finished inside the grace; no write started after Ctrl-C
    now_moved = moved(stack)
    assert slow in now_moved  # the write under way at Ctrl-C finished and was verified
    assert counts["moved"] == len(now_moved) == len(stack.writes("PATCH")) >= 4
    assert counts["inFlight"] == 0 and counts["notStarted"] == 12 - counts["moved"] > 0
    assert f"run {run_id} interrupted (SIGINT): {counts['moved']} moved" in err
    assert f"{counts['notStarted']} not started" in err and "Traceback" not in err
    # every move has its record, every other target says why it was not started
    trail = records(stack, run_id)
    assert {r["target"] for r in of_kind(trail, "verified")} == now_moved
    not_started = of_kind(trail, "apply-outcome", outcome="skipped", errorCode="Interrupted")
    assert {r["target"] for r in not_started} == set(targets) - now_moved
    assert of_kind(trail, "run-interrupted", reason="SIGINT")
    assert trail[-1]["kind"] == "run-finished" and trail[-1]["outcome"] == "interrupted"
    assert stack.service().runs.status(run_id) == "interrupted"
    assert stack.service().ledger.holder(parse_key_id(KEY)) is None  # the lease is released
    assert run("audit", "verify", "--run", run_id).exit_code == 0  # an honest, closed trail
    # the next run finishes the rest
    again = run("rotate", KEY, "--yes", "-o", "json")
    assert again.exit_code == 0 and moved(stack) == set(targets)


def test_a_second_ctrl_c_records_the_writes_still_under_way_as_in_flight(stack) -> None:
    stack.set(ROTATION_CONCURRENCY="2")
    targets = estate(stack, 6)
    slow = targets[0]  # under way for 6 s: still so when the second Ctrl-C ends the grace
    stack.admin.add_fault(method="PATCH", host=ARM, pathRegex="/registries/reg00$", latencyMs=6000)
    stack.admin.add_fault(method="PATCH", host=ARM, latencyMs=300)
    child = rotate_in_child(stack)
    wait_for_writes(stack, child, 3)
    child.send_signal(signal.SIGINT)
    time.sleep(0.3)  # the child's handler runs between two signals, not merged into one
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    result = json.loads(out)
    counts = result["interrupted"]
    assert counts["moved"] >= 3 and counts["inFlight"] >= 1 and counts["notStarted"] >= 1, err
    assert counts["moved"] + counts["inFlight"] + counts["notStarted"] == 6
    trail = records(stack, result["runId"])
    in_flight = of_kind(trail, "apply-outcome", outcome="in-flight")
    assert slow in {r["target"] for r in in_flight} and len(in_flight) == counts["inFlight"]
    assert all(r["detail"]["writes"] == 1 and r["errorCode"] == "Interrupted" for r in in_flight)
    assert len(of_kind(trail, "verified")) == counts["moved"]
    assert trail[-1]["kind"] == "run-finished"  # nothing recorded after the run closed
    assert slow in moved(stack)  # the write in flight did land, after the run closed
    assert run("audit", "verify", "--run", result["runId"]).exit_code == 0


def test_after_a_hard_kill_the_next_run_records_the_moves_the_dead_run_left_unrecorded(stack) -> None:
    stack.set(ROTATION_CONCURRENCY="2", ROTATION_LEASE_SECONDS="5")
    targets = estate(stack, 10)
    stack.admin.add_fault(method="PATCH", host=ARM, latencyMs=800)
    child = rotate_in_child(stack)
    wait_for_writes(stack, child, 4)
    child.send_signal(signal.SIGKILL)  # no handler runs: the run stays `running`, its lease held
    child.communicate(timeout=30)
    dead = stack.service().ledger.holder(parse_key_id(KEY))["Owner"].split("/")[0]
    assert stack.service().runs.status(dead) == "running"
    wait_for_lease_to_expire(stack)
    before = run("audit", "verify", "--run", dead)  # a run left running without its lease
    assert before.exit_code == 4 and "unfinished" in before.output, before.output
    assert of_kind(records(stack, dead), "verified") == []  # its outcome records never left the process
    stack.admin.clear_faults()
    again = run("rotate", KEY, "--yes", "-o", "json")  # waits for the dead run's lease, takes it over
    assert again.exit_code == 0, again.output
    result = json.loads(again.stdout)
    already = {st["target"] for st in result["steps"] if st["action"] == "already-current"}
    assert len(already) >= 4  # what the dead run moved (and the writes it had under way)
    trail = records(stack, result["runId"])
    assert of_kind(trail, "lease-taken-over")
    unrecorded = of_kind(trail, "unrecorded-move", reason="interrupted-run")
    assert {r["target"] for r in unrecorded} == already
    assert all(r["detail"]["interruptedRun"] == dead and r["toVersion"] == NEW for r in unrecorded)
    assert of_kind(trail, "unfinished-run")[0]["detail"] == {
        "interruptedRun": dead,
        "unrecordedMoves": len(already),
    }
    assert stack.service().runs.status(dead) == "interrupted"
    assert moved(stack) == set(targets)
    assert run("audit", "verify", "--run", result["runId"]).exit_code == 0
    assert run("audit", "verify", "--run", dead).exit_code == 0  # now accounted for


def test_a_killed_run_keeps_the_versions_it_verified_for_the_next_runs_revert_check(stack) -> None:
    """SIGKILL, as a recycled host does it: nothing at the run's end runs. The versions it had
    verified are stored already (storage/written.py, VerifiedAsTheyGo), so a later revert of
    those consumers is still told from a roll-forward. Before, they were written after the last
    target only, and a run killed with one write under way stored none."""
    targets = estate(stack, 6)
    stack.admin.add_fault(method="PATCH", host=ARM, pathRegex="/registries/reg00$", latencyMs=60_000)
    child = rotate_in_child(stack)
    store, key = WrittenStore(stack.service().ledger.table), parse_key_id(KEY)
    deadline = time.monotonic() + 60
    while len(rows := store.read(key)) < 5:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, f"{len(rows)} verified versions stored while the run went"
        time.sleep(0.05)  # a real child process writing to Azurite: polled, no clock of ours moves it
    child.send_signal(signal.SIGKILL)  # reg00's write is still held: the run never reached its end
    child.communicate(timeout=30)
    stack.admin.release_holds()
    assert set(rows) == {t.lower() for t in targets[1:]}
    assert {(w.version, w.target in targets) for w in rows.values()} == {(NEW.lower(), True)}


def test_the_budget_ending_closes_the_run_and_releases_the_lease(stack) -> None:
    """In table output, as on a terminal: the status, and the line naming the run and its counts."""
    stack.set(ROTATION_CONCURRENCY="1", ROTATION_TIME_BUDGET_SECONDS="5")
    estate(stack, 6)
    stack.admin.add_fault(method="PATCH", host=ARM, latencyMs=2000)
    result = run("rotate", KEY, "--yes")
    assert result.exit_code == 130, result.output
    assert "status interrupted" in result.stdout
    said = re.search(
        r"run (\S+) interrupted \(TimeBudgetExhausted\): (\d+) moved, (\d+) in flight, (\d+) not started",
        result.stderr,
    )
    assert said, result.output
    run_id, moved_count, in_flight, not_started = said[1], *map(int, said.groups()[1:])
    assert moved_count >= 1 and not_started >= 1 and moved_count + in_flight + not_started == 6
    assert len(moved(stack)) == moved_count
    trail = records(stack, run_id)
    skipped = of_kind(trail, "apply-outcome", outcome="skipped", errorCode="TimeBudgetExhausted")
    assert len(skipped) == not_started
    assert "the time budget ended" in of_kind(trail, "run-interrupted")[0]["message"]
    assert trail[-1]["kind"] == "run-finished" and trail[-1]["outcome"] == "interrupted"
    assert stack.service().runs.status(run_id) == "interrupted"
    assert stack.service().ledger.holder(parse_key_id(KEY)) is None


def test_a_budget_that_ends_while_reading_the_key_ends_the_run_promptly(stack) -> None:
    """The key with thousands of versions: listing them outlasts the budget. The run stops when
    the budget ends, says so, and closes."""
    many = [s.version(f"v{i}", created=f"-{400 - i // 10}d") for i in range(600)]
    stack.load(
        s.scenario({"acr-cmk": s.key(*many)}, registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))])
    )
    stack.service()
    stack.set(ROTATION_TIME_BUDGET_SECONDS="5")
    stack.admin.add_fault(host="contoso-cmk.vault.azure.net", pathRegex="/versions", latencyMs=300)
    result = run("rotate", KEY, "--yes", "-o", "json")
    body = json.loads(result.stdout)
    assert result.exit_code == 130 and body["status"] == "interrupted", result.output
    assert body["interrupted"]["reason"] == "TimeBudgetExhausted"
    took = datetime.fromisoformat(body["finishedAt"]) - datetime.fromisoformat(body["startedAt"])
    assert took.total_seconds() < 5 + 2  # the reading stopped with the budget (24 pages take 7 s)
    trail = records(stack, body["runId"])
    assert [r["kind"] for r in trail][-2:] == ["run-interrupted", "run-finished"]
    assert stack.service().ledger.holder(parse_key_id(KEY)) is None


def test_sigterm_to_the_queue_trigger_closes_the_run_and_requeues_the_rest(stack) -> None:
    """The Functions host stopping an instance: the run under way closes `interrupted`, the same
    request goes back on the queue for the rest, and the process then ends by the signal."""
    from azure.storage.queue import QueueClient

    from rotation.model.request import new_request

    stack.set(ROTATION_CONCURRENCY="2", ROTATION_RESUME_AFTER_SECONDS="1")  # 10 on Azure
    # Names of its own, kept though the emulator now drops a write an earlier test's child left
    # held across the reset (it once landed here on a registry of the same name).
    targets = estate(stack, 8, prefix="sig")
    stack.admin.add_fault(method="PATCH", host=ARM, latencyMs=500)
    request = new_request(parse_key_id(KEY), "http", "pytest")
    child = trigger_in_child(stack, request)
    wait_for_writes(stack, child, 2)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    # the trigger returned (its run closed, the rest requeued) before the process was ended by
    # the signal, or the script ended first: either way, nothing raised
    assert child.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
    trail = records(stack, request.request_id)
    assert trail[-1]["kind"] == "run-finished" and trail[-1]["outcome"] == "interrupted"
    assert of_kind(trail, "run-interrupted", reason="SIGTERM")
    now_moved = moved(stack)
    verified = {r["target"] for r in of_kind(trail, "verified")}
    # On a loaded machine a write can outlast the grace (recorded `in-flight`) or its read-back
    # fail (recorded `failed`) and still land: sent and recorded, the next run reads it back.
    # What must never happen is a move without a record, or one recorded as not started.
    sent = {r["target"] for r in of_kind(trail, "apply-outcome") if r.get("outcome") != "skipped"}
    unrecorded = {t: [r for r in trail if r.get("target") == t] for t in now_moved - verified - sent}
    assert verified <= now_moved and not unrecorded and 2 <= len(now_moved) < 8, unrecorded
    assert stack.service().runs.status(request.request_id) == "interrupted"
    row = stack.service().runs.table.get_entity(request.request_id, "run")
    assert row["Message"].endswith("the request is back on the queue in 1s for the rest"), row
    assert stack.service().ledger.holder(parse_key_id(KEY)) is None
    status, body, _ = call(
        function_app.get_rotation,
        "GET",
        f"/api/rotations/{request.request_id}",
        route_params={"runId": request.request_id},
    )
    assert status == 200 and body["status"] == "interrupted"
    assert body["interrupted"]["reason"] == "SIGTERM" and body["interrupted"]["moved"] == len(verified)
    queue = QueueClient.from_connection_string(stack.storage, "rotation-requests")
    waiting = list(queue.receive_messages(visibility_timeout=1))  # requeued invisible for a second
    deadline = time.monotonic() + 30
    while not waiting:
        assert time.monotonic() < deadline, "the request never came back"
        time.sleep(0.5)  # a real queue in Azurite: the message becomes visible on the wall clock
        waiting = list(queue.receive_messages(visibility_timeout=1))
    assert [json.loads(base64.b64decode(m.content))["requestId"] for m in waiting] == [request.request_id]
    # the queue trigger finishes the rest with the same request
    stack.admin.clear_faults()
    function_app_child = trigger_in_child(stack, request, message_id="m2")
    _, err = function_app_child.communicate(timeout=120)
    assert function_app_child.returncode == 0, err
    assert moved(stack) == set(targets)


def test_a_queue_retry_after_a_hard_kill_records_what_its_own_earlier_attempt_moved(stack) -> None:
    """The host kills the worker mid-run and retries the message: the same run id, a new attempt,
    which takes over its own dead attempt's lease and records that attempt's unrecorded moves."""
    from rotation.doors import worker
    from rotation.model.request import new_request

    stack.set(ROTATION_CONCURRENCY="2", ROTATION_LEASE_SECONDS="5")
    targets = estate(stack, 8)
    stack.admin.add_fault(method="PATCH", host=ARM, latencyMs=600)
    request = new_request(parse_key_id(KEY), "http", "pytest")
    child = trigger_in_child(stack, request)
    wait_for_writes(stack, child, 3)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    stack.admin.clear_faults()
    wait_for_lease_to_expire(stack)  # the dead attempt's lease has to run out first
    result = worker.handle_message(stack.service(), encode(request), dequeue_count=2)
    assert result is not None and result.status == "succeeded"
    already = {st.target for st in result.steps if st.action == "already-current"}
    assert len(already) >= 3
    trail = records(stack, request.request_id)
    starts = [r["seq"] for r in trail if r["kind"] == "run-started"]
    assert len(starts) == 2  # one chain, two attempts
    unrecorded = of_kind(trail, "unrecorded-move")
    assert {r["target"] for r in unrecorded} == already and all(r["seq"] > starts[1] for r in unrecorded)
    assert all(r["detail"]["interruptedRun"] == request.request_id for r in unrecorded)
    assert moved(stack) == set(targets)


def test_the_worker_budget_closes_the_run_before_it_cuts_storage_off(stack) -> None:
    """Reading the key outlasts the worker's own budget: the run's budget ends first, with time
    left to record it, so the run closes `interrupted` (not left `running` with its lease held),
    and having moved nothing the attempt fails, for the host to retry and in the end poison."""
    import pytest

    from rotation.doors import worker
    from rotation.model.request import new_request

    many = [s.version(f"v{i}", created=f"-{400 - i // 10}d") for i in range(600)]
    stack.load(
        s.scenario({"acr-cmk": s.key(*many)}, registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))])
    )
    stack.service()
    stack.set(ROTATION_WORKER_BUDGET_SECONDS="14")  # the run's: 10.5 s, 3.5 s kept to close
    stack.admin.add_fault(
        host="contoso-cmk.vault.azure.net", pathRegex="/versions", latencyMs=500
    )  # 24 pages: 12 s
    request = new_request(parse_key_id(KEY), "http", "pytest")
    with pytest.raises(worker.RunInterrupted):
        worker.handle_message(stack.service(), encode(request))
    trail = records(stack, request.request_id)
    assert [r["kind"] for r in trail][-2:] == ["run-interrupted", "run-finished"]
    assert trail[-1]["outcome"] == "interrupted"
    assert stack.service().runs.status(request.request_id) == "interrupted"
    assert stack.service().ledger.holder(parse_key_id(KEY)) is None


def test_ctrl_c_in_a_canary_wave_leaves_the_later_waves_not_started(stack) -> None:
    stack.set(ROTATION_CONCURRENCY="1")
    registries = [
        s.registry(f"reg{i:02d}", s.key_id("acr-cmk", OLD), tags={"cmk-rotation-wave": "1"} if i < 3 else {})
        for i in range(6)
    ]
    load_estate(stack, registries)
    stack.service()
    stack.admin.add_fault(method="PATCH", host=ARM, latencyMs=800)
    child = rotate_in_child(stack)
    wait_for_writes(stack, child, 1)  # the canary wave is under way
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    body = json.loads(out)
    counts = body["interrupted"]
    assert body["status"] == "interrupted" and counts["reason"] == "SIGINT"
    assert counts["moved"] == len(moved(stack)) and counts["moved"] <= 3, err
    assert counts["notStarted"] == 6 - counts["moved"]
    later = [st for st in body["steps"] if st["wave"] == "last"]
    assert [st["outcome"] for st in later] == ["skipped"] * 3, later
    assert {st["errorCode"] for st in body["steps"] if st["outcome"] == "skipped"} == {"Interrupted"}
    trail = records(stack, body["runId"])
    assert all(r["target"] not in {st["target"] for st in later} for r in of_kind(trail, "verified"))
    assert trail[-1]["kind"] == "run-finished" and trail[-1]["outcome"] == "interrupted"
