"""Canary waves against the emulator and Azurite: wave order, the halt, replay, and the soak
through the real queue with an injected clock (nothing sleeps through the soak)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.storage.queue import QueueClient
from click.testing import CliRunner

import function_app
from rotation.doors.cli import main
from rotation.doors.worker import RunFailed, run_request
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from tests import scenarios as s
from tests.support.runs import records

OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("acr-cmk")
WAVE = "cmk-rotation-wave"
TOPIC = "https://rotation-outcomes.westeurope-1.eventgrid.azure.net/api/events"


def estate(stack) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
            registries=[
                s.registry("w0a", s.key_id("acr-cmk", OLD), tags={WAVE: "0"}),
                s.registry("w1a", s.key_id("acr-cmk", OLD), tags={WAVE: "1"}),
                s.registry("w1b", s.key_id("acr-cmk", OLD), tags={WAVE: "1"}),
                s.registry("w2a", s.key_id("acr-cmk", OLD), sub=s.SUB_B, tags={WAVE: "2"}),
                s.registry("untagged", s.key_id("acr-cmk", OLD)),
            ],
            batch_accounts=[s.batch("w0batch", s.key_id("acr-cmk", OLD), tags={"CMK-Rotation-Wave": "0"})],
        )
    )


def versions(stack) -> dict[str, str]:
    state = stack.admin.state()
    found = {r["id"].rsplit("/", 1)[1]: r["keyId"] for r in state["registries"]}
    found |= {b["id"].rsplit("/", 1)[1]: b["keyId"] for b in state["batchAccounts"]}
    return {name: ("new" if key_id.endswith(NEW) else "old") for name, key_id in found.items()}


def patched(stack) -> list[str]:
    return [c["path"].rsplit("/", 1)[1] for c in stack.writes("PATCH")]


def test_plan_and_dry_run_show_the_waves(stack) -> None:
    estate(stack)
    result = CliRunner().invoke(main, ["-o", "json", "plan", KEY])
    plan = json.loads(result.output)
    assert [(w["wave"], len(w["update"])) for w in plan["waves"]] == [
        ("0", 2),
        ("1", 2),
        ("2", 1),
        ("last", 1),
    ]
    assert {st["target"].rsplit("/", 1)[1]: st["wave"] for st in plan["steps"]}["w0batch"] == "0"
    dry = CliRunner().invoke(main, ["rotate", KEY, "--dry-run"])
    assert dry.exit_code == 0 and "waves: 0 (2 to update" in dry.output.replace("\n", " ")
    assert stack.writes("PATCH") == []


def test_a_failed_wave_halts_the_rollout_and_a_replay_finishes_it(stack) -> None:
    estate(stack)
    stack.admin.add_fault(method="PATCH", pathRegex="registries/w1a$", status=400)
    stack.set(ROTATION_OUTCOME_TOPIC_ENDPOINT=TOPIC)
    service = stack.service()
    request = new_request(parse_key_id(KEY), "http", "pytest")
    try:
        run_request(service, request)
        raise AssertionError("the halted run must fail so the queue retries it")
    except RunFailed as failed:
        result = failed.result
    assert versions(stack) == {
        "w0a": "new",
        "w0batch": "new",
        "w1a": "old",
        "w1b": "new",
        "w2a": "old",
        "untagged": "old",
    }
    assert "w2a" not in patched(stack) and "untagged" not in patched(stack)
    assert result.status == "failed" and str(result.halted).startswith("halted after wave 1: w1a:")
    held = {st.target.rsplit("/", 1)[1]: st for st in result.steps if st.error_code == "WaveHalted"}
    assert set(held) == {"w2a", "untagged"} and str(held["w2a"].error).startswith("halted after wave 1")
    run = service.runs.get(request.request_id)
    assert run["status"] == "failed" and run["halted"].startswith("halted after wave 1")
    assert any(r["kind"] == "wave-halted" for r in records(stack, run=request.request_id))
    [published] = stack.admin.events()
    assert published["event"]["type"] == "Rotation.PartiallyFailed"
    assert published["event"]["data"]["halted"].startswith("halted after wave 1: w1a:")

    # The cause is fixed; on-call replays the poisoned request through the same path.
    stack.admin.clear_faults()
    stack.admin.clear_calls()
    again = run_request(service, new_request(parse_key_id(KEY), "replay", "pytest"))
    assert again is not None and again.status == "succeeded"
    assert set(versions(stack).values()) == {"new"}
    assert sorted(patched(stack)) == ["untagged", "w1a", "w2a"]


def test_an_unhealthy_earlier_wave_holds_the_next_one_back(stack) -> None:
    estate(stack)
    stack.admin.add_fault(method="PATCH", pathRegex="registries/w0a$", lroResult="Failed")
    result = stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest"))
    assert result.halted.startswith("halted after wave 0: w0a")
    assert versions(stack)["w1a"] == "old" and versions(stack)["untagged"] == "old"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_soak_puts_the_request_back_and_the_next_wave_waits_for_the_clock(stack) -> None:
    estate(stack)
    stack.set(ROTATION_WAVE_SOAK_MINUTES="30", ROTATION_WAVE_RECHECK_SECONDS="1")
    service = stack.service()
    clock = Clock()
    service.reconciler.applier.clock = clock  # the soak's clock; Azurite's visibility delay stays real
    request = new_request(parse_key_id(KEY), "http", "pytest")
    first = run_request(service, request)
    assert first is not None and first.status == "soaking" and first.requeue_after == 1
    assert versions(stack)["w0a"] == "new" and versions(stack)["w1a"] == "old"
    queue = QueueClient.from_connection_string(stack.storage, "rotation-requests")
    assert queue.get_queue_properties().approximate_message_count == 1  # back, invisible for now
    assert list(queue.peek_messages()) == []
    assert service.runs.get(request.request_id)["status"] == "soaking"

    # The request comes back through the queue: still inside the soak, it only re-checks wave 0.
    dispatcher = stack.dispatcher(function_app.run_rotation)
    try:
        pump_until(dispatcher, lambda: len(_soaks(stack, request.request_id, "0")) >= 3)
        assert versions(stack)["w1a"] == "old" and service.runs.get(request.request_id)["status"] == "soaking"
        for wave, name in (("1", "w1a"), ("2", "w2a")):  # each wave soaks before the next one starts
            clock.now += timedelta(minutes=31)
            pump_until(dispatcher, lambda wave=wave: bool(_soaks(stack, request.request_id, wave)))
            assert versions(stack)[name] == "new" and versions(stack)["untagged"] == "old"
        clock.now += timedelta(minutes=31)
        dispatcher.run_until_idle(timeout=30)
    finally:
        dispatcher.close()
    assert set(versions(stack).values()) == {"new"}
    assert service.runs.get(request.request_id)["status"] == "succeeded"
    assert sorted(patched(stack)).count("w1a") == 1  # every resource written once


def pump_until(dispatcher: Any, done: Any, timeout: float = 30) -> None:
    """Hand queue messages to the function until `done()` (a real queue: the 1 s rechecks)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the condition never came true"
        if not dispatcher.pump():
            time.sleep(0.05)  # Azurite (a real process) shows a re-queued message when it is due


def _soaks(stack, run_id: str, wave: str) -> list[dict[str, Any]]:
    """The run's soak records after `wave` was verified (written once its progress is stored)."""
    return [
        r for r in records(stack, run=run_id) if r["kind"] == "wave-soaking" and r["detail"]["wave"] == wave
    ]


def test_cli_rotate_hands_the_soaking_rollout_to_the_queue(stack) -> None:
    estate(stack)
    stack.set(ROTATION_WAVE_SOAK_MINUTES="45", ROTATION_OUTCOME_TOPIC_ENDPOINT=TOPIC)
    result = CliRunner().invoke(main, ["-o", "json", "rotate", KEY, "--yes"])
    body = json.loads(result.output)
    assert result.exit_code == 0 and body["status"] == "soaking" and body["requeueAfterSeconds"] == 300
    assert any("wave 1 starts after the soak" in note for note in body["notes"])
    queue = QueueClient.from_connection_string(stack.storage, "rotation-requests")
    assert queue.get_queue_properties().approximate_message_count == 1  # the rest continues from there
    assert versions(stack)["w0a"] == "new" and versions(stack)["w1a"] == "old"
    assert stack.admin.events() == []  # not finished: no outcome event yet
    # The hourly sweep (or anyone) asks again during the soak: no second chain of rechecks.
    again = run_request(stack.service(), new_request(parse_key_id(KEY), "sweep", "sweep"))
    assert again is not None and again.status == "soaking" and again.requeue_after is None
    assert "another queued request carries the rollout on" in again.notes[-1]
    assert queue.get_queue_properties().approximate_message_count == 1
