"""The local host's parts alone: NCRONTAB, routing and keys, the Event Grid webhook's answers,
Event Grid's retry schedule and dead letters, Key Vault's expiry events on the emulator's clock,
and the event subscription read from infra/."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devstack.functions import EventGridFunction, FunctionIndex, HttpFunction, index
from devstack.infra import event_subscription
from devstack.ncrontab import Schedule
from devstack.webhost import FunctionsWebHost, HostKeys
from emulator import scenario as scenario_format
from emulator.delivery import (
    EventGridDelivery,
    dead_letter_path,
    retry_delay,
    subscription_from_spec,
)
from emulator.faults import CallLog, FaultBook
from emulator.keyevents import EXPIRED, NEAR_EXPIRY, NEW_VERSION, KeyEvents
from emulator.state import World
from tests import scenarios as s

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


# -- NCRONTAB ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */15 * * * *", datetime(2026, 1, 1, 10, 14, 59), datetime(2026, 1, 1, 10, 15)),
        ("0 0 * * * *", datetime(2026, 1, 1, 10, 0), datetime(2026, 1, 1, 11, 0)),
        ("0 30 9 * * 1-5", datetime(2026, 1, 2, 9, 30), datetime(2026, 1, 5, 9, 30)),  # Fri -> Mon
        ("0 0 0 * * 7", datetime(2026, 1, 1), datetime(2026, 1, 4)),  # 7 is Sunday
        ("*/10 * * * * *", datetime(2026, 1, 1, 0, 0, 5), datetime(2026, 1, 1, 0, 0, 10)),
        ("0 0 0 29 2 *", datetime(2026, 3, 1), datetime(2028, 2, 29)),
    ],
)
def test_ncrontab_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(after) == expected


@pytest.mark.parametrize("bad", ["0 0 * * *", "61 * * * * *", "0 0 * * 13 *", "x * * * * *"])
def test_ncrontab_rejects_what_the_host_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="NCRONTAB"):
        Schedule.parse(bad)


def test_the_app_indexes_as_the_worker_sees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATION_SWEEP_SCHEDULE", "0 5 * * * *")
    functions = index()
    assert {t.name: t.schedule for t in functions.timers} == {
        "sweep_drift": "0 5 * * * *",  # %ROTATION_SWEEP_SCHEDULE% resolved from the settings
        "move_poison": "0 */15 * * * *",
    }
    assert [(q.name, q.queue) for q in functions.queues] == [("run_rotation", "rotation-requests")]
    assert [f.name for f in functions.event_grid] == ["on_key_event"]
    plan, params = functions.route("POST", "rotations/plan") or (None, None)
    assert plan is not None and plan.name == "plan_rotation" and params == {}
    status, params = functions.route("GET", "rotations/abc") or (None, None)
    assert status is not None and status.name == "get_rotation" and params == {"runId": "abc"}
    assert functions.route("DELETE", "rotations/abc") is None
    assert functions.route("GET", "rotations/abc/extra") is None
    assert {f.auth_level for f in functions.http} == {"function"}


# -- the HTTP front -----------------------------------------------------------------------------
def _web(http_call: Any = None, event_call: Any = None) -> tuple[FunctionsWebHost, HostKeys, list[str]]:
    import azure.functions as func

    fired: list[str] = []
    functions = FunctionIndex(
        http=[
            HttpFunction(
                "echo",
                "echo/{name}",
                frozenset({"POST"}),
                "function",
                http_call
                or (lambda req: func.HttpResponse(req.route_params["name"] + req.get_body().decode())),
            ),
            HttpFunction("open", "open", frozenset(), "anonymous", lambda req: func.HttpResponse("hi")),
        ],
        queues=[],
        timers=[],
        event_grid=[EventGridFunction("on_key_event", event_call or (lambda event: None))],
    )
    keys = HostKeys()

    def run_now(name: str) -> bool:
        fired.append(name)
        return name == "sweep_drift"

    web = FunctionsWebHost(functions, keys, run_now)
    return web, keys, fired


def test_function_keys_are_enforced_as_the_host_does() -> None:
    web, keys, fired = _web()
    assert web.handle("POST", "/api/echo/x", {}, b"!").status == 401
    assert web.handle("POST", "/api/echo/x", {"x-functions-key": "wrong"}, b"!").status == 401
    ok = web.handle("POST", "/api/echo/x", {"x-functions-key": keys.function}, b"!")
    assert (ok.status, ok.body) == (200, b"x!")
    assert web.handle("POST", f"/api/echo/y?code={keys.master}", {}, b"").status == 200
    assert web.handle("GET", "/api/open", {}, b"").status == 200
    assert (
        web.handle("POST", "/admin/functions/sweep_drift", {"x-functions-key": keys.function}, b"").status
        == 401
    )
    assert (
        web.handle("POST", "/admin/functions/sweep_drift", {"x-functions-key": keys.master}, b"").status
        == 202
    )
    assert web.handle("POST", "/admin/functions/nope", {"x-functions-key": keys.master}, b"").status == 404
    assert fired == ["sweep_drift", "nope"]


def test_a_function_that_raises_is_a_500_not_a_dead_host() -> None:
    def boom(req: Any) -> Any:
        raise RuntimeError("boom")

    web, keys, _ = _web(http_call=boom)
    assert web.handle("POST", "/api/echo/x", {"x-functions-key": keys.function}, b"").status == 500


def test_event_grid_webhook_answers_as_event_grid_expects() -> None:
    seen: list[Any] = []

    def on_event(event: Any) -> None:
        seen.append(event)
        if event.subject == "fail":
            raise RuntimeError("cannot enqueue")

    web, keys, _ = _web(event_call=on_event)
    sample = json.loads((SAMPLES / "key-new-version.eventgrid.json").read_text())
    url = f"/runtime/webhooks/eventgrid?functionName=on_key_event&code={keys.eventgrid}"
    assert web.handle("POST", url.split("&code")[0], {}, json.dumps(sample).encode()).status == 401
    assert (
        web.handle("POST", url, {"aeg-event-type": "Notification"}, json.dumps(sample).encode()).status == 200
    )
    assert seen[0].event_type == "Microsoft.KeyVault.KeyNewVersionCreated"
    failing = [{**sample[0], "subject": "fail"}]
    assert web.handle("POST", url, {}, json.dumps(failing).encode()).status == 500  # Event Grid retries
    assert web.handle("POST", url, {}, b"{not json").status == 400  # not retried: dead-lettered
    validation = [{**sample[0], "data": {"validationCode": "abc"}}]
    answer = web.handle(
        "POST", url, {"aeg-event-type": "SubscriptionValidation"}, json.dumps(validation).encode()
    )
    assert json.loads(answer.body) == {"validationResponse": "abc"}


# -- Event Grid ---------------------------------------------------------------------------------
def test_retry_schedule_and_dead_letter_path_follow_event_grid() -> None:
    assert [retry_delay(n) for n in range(1, 12)] == [
        10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 43200,
    ]  # fmt: skip
    path = dead_letter_path("cmk-rotation", datetime(2026, 3, 4, 5, 6, tzinfo=UTC).timestamp())
    assert path.startswith("CMK-ROTATION/2026/3/4/5/") and path.endswith(".json")  # not zero-padded


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "s", "topic": "v"}, "endpoint"),
        ({"name": "s", "topic": "v", "endpoint": "ftp://x"}, "endpoint"),
        (
            {"name": "s", "topic": "v", "endpoint": "http://x", "maxDeliveryAttempts": 31},
            "maxDeliveryAttempts",
        ),
        (
            {"name": "s", "topic": "v", "endpoint": "http://x", "eventTimeToLiveInMinutes": 0},
            "eventTimeToLive",
        ),
        (
            {"name": "s", "topic": "v", "endpoint": "http://x", "eventDeliverySchema": "X"},
            "eventDeliverySchema",
        ),
        ({"name": "s", "topic": "v", "endpoint": "http://x", "color": "red"}, "unknown"),
    ],
)
def test_subscription_specs_are_validated(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        subscription_from_spec(spec, None)


class _Answers(BaseHTTPRequestHandler):
    statuses: list[int] = []
    received: list[tuple[dict[str, str], Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(self.statuses.pop(0) if self.statuses else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def endpoint() -> Any:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Answers
    server.shutdown()


def _deliver(endpoint_url: str, statuses: list[int], **spec: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    _Answers.statuses[:] = statuses
    _Answers.received.clear()
    letters: list[Any] = []
    delivery = EventGridDelivery(FaultBook(), CallLog(), lambda: 0.00001)
    subscription = {
        "name": "cmk-rotation",
        "topic": "contoso-cmk",
        "endpoint": endpoint_url,
        "includedEventTypes": [NEW_VERSION, NEAR_EXPIRY],
        **spec,
    }
    delivery.subscribe(
        subscription_from_spec(subscription, lambda path, body: letters.append((path, json.loads(body))))
    )
    event = json.loads((SAMPLES / "key-new-version.eventgrid.json").read_text())[0]
    assert delivery.publish("contoso-cmk", event) == 1
    assert (
        delivery.publish("contoso-cmk", {**event, "eventType": "Microsoft.KeyVault.SecretNewVersionCreated"})
        == 0
    )
    pause = threading.Event()
    for _ in range(200):  # the worker runs on its own thread; wait for its last word
        if delivery.idle() and delivery.log() and delivery.log()[-1]["outcome"] != "failed":
            break
        pause.wait(0.05)
    log = delivery.log()
    delivery.stop()
    return log, letters


def test_a_retried_failure_dead_letters_after_max_attempts(endpoint: Any) -> None:
    log, letters = _deliver(endpoint[0], [503] * 4, maxDeliveryAttempts=3)
    assert [entry["outcome"] for entry in log] == ["failed", "failed", "failed", "dead-lettered"]
    ((path, (letter,)),) = letters
    assert path.startswith("CMK-ROTATION/")
    assert letter["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert (letter["deliveryAttempts"], letter["lastHttpStatusCode"], letter["lastDeliveryOutcome"]) == (
        3,
        503,
        "Busy",
    )
    assert {"publishTime", "lastDeliveryAttemptTime", "data", "topic"} <= set(letter)


def test_a_401_is_not_retried_and_a_success_after_retries_is_delivered(endpoint: Any) -> None:
    log, letters = _deliver(endpoint[0], [401])
    assert [entry["outcome"] for entry in log] == ["failed", "dead-lettered"]
    assert letters[0][1][0]["deliveryAttempts"] == 1
    log, letters = _deliver(endpoint[0], [500, 500])
    assert [entry["outcome"] for entry in log] == ["failed", "failed", "delivered"] and letters == []


def test_deliveries_carry_event_grid_headers_in_the_subscriptions_schema(endpoint: Any) -> None:
    _deliver(endpoint[0], [500])
    (first_headers, first), (second_headers, _) = _Answers.received
    assert isinstance(first, list) and first[0]["eventType"] == NEW_VERSION  # Event Grid schema: an array
    assert first_headers["aeg-event-type"] == "Notification"
    assert first_headers["aeg-subscription-name"] == "CMK-ROTATION"
    assert (first_headers["aeg-delivery-count"], second_headers["aeg-delivery-count"]) == ("0", "1")
    _deliver(endpoint[0], [], eventDeliverySchema="CloudEventSchemaV1_0")
    ((headers, cloud),) = _Answers.received
    assert headers["content-type"].startswith("application/cloudevents+json")
    assert (cloud["specversion"], cloud["type"], cloud["subject"]) == ("1.0", NEW_VERSION, "acr-cmk")
    assert cloud["source"].endswith("/vaults/contoso-cmk") and cloud["data"]["ObjectName"] == "acr-cmk"


def test_one_subscription_name_on_two_vault_topics_delivers_each_vaults_events(endpoint: Any) -> None:
    # Azure keeps event subscriptions per system topic: `make serve` gives every vault the same name
    _Answers.statuses[:] = []
    _Answers.received.clear()
    delivery = EventGridDelivery(FaultBook(), CallLog(), lambda: 0.00001)
    for vault in ("contoso-cmk", "contoso-other"):
        delivery.subscribe(
            subscription_from_spec({"name": "cmk-rotation", "topic": vault, "endpoint": endpoint[0]}, None)
        )
    assert len(delivery.subscriptions()) == 2
    event = json.loads((SAMPLES / "key-new-version.eventgrid.json").read_text())[0]
    assert delivery.publish("contoso-cmk", event) == 1
    assert (
        delivery.publish(
            "contoso-other", {**event, "topic": event["topic"].replace("contoso-cmk", "contoso-other")}
        )
        == 1
    )
    pause = threading.Event()
    for _ in range(200):  # the worker runs on its own thread; wait until both are delivered
        if delivery.idle() and len(_Answers.received) == 2:
            break
        pause.wait(0.05)
    delivery.stop()
    topics = sorted(body[0]["topic"].rsplit("/", 1)[-1] for _, body in _Answers.received)
    assert topics == ["contoso-cmk", "contoso-other"]


def test_time_to_live_ends_retries_before_max_attempts(endpoint: Any) -> None:
    # 1 minute of TTL holds the attempts at 0 s, 10 s and 40 s; the next (100 s) is past it
    _, letters = _deliver(endpoint[0], [500] * 10, eventTimeToLiveInMinutes=1)
    assert letters[0][1][0]["deadLetterReason"] == "TimeToLiveExceeded"
    assert letters[0][1][0]["deliveryAttempts"] == 3


# -- Key Vault's events ----------------------------------------------------------------------------
def _world() -> World:
    world = World()
    scenario_format.load(
        world,
        s.scenario(
            {
                "soon": s.key(s.version("s1", exp="+40d")),
                "already": s.key(s.version("a1", exp="+10d")),
                "never": s.key(s.version("n1", exp=None)),
            }
        ),
    )
    return world


def test_expiry_events_fire_once_when_the_clock_crosses_each_threshold() -> None:
    world, published = _world(), []
    events = KeyEvents(world, lambda vault, event: published.append((vault, event)))
    events.baseline()  # "already" was near expiry at load: it did not enter the window now
    assert events.scan() == []
    fired = events.advance(11 * 86400)
    assert [(e["eventType"], e["subject"]) for e in fired] == [(NEAR_EXPIRY, "soon"), (EXPIRED, "already")]
    assert events.advance(3600) == []  # fired once, not on every scan
    assert [(e["eventType"], e["subject"]) for e in events.advance(30 * 86400)] == [(EXPIRED, "soon")]
    assert [vault for vault, _ in published] == [s.VAULT] * 3
    assert events.describe()["advancedSeconds"] == 41 * 86400 + 3600
    with pytest.raises(ValueError, match="forward"):
        events.advance(-1)


def test_events_have_key_vaults_shape() -> None:
    world, published = _world(), []
    events = KeyEvents(world, lambda vault, event: published.append(event))
    vault = world.vaults[s.VAULT]
    key = vault.key("soon")
    assert key is not None
    events.new_version(vault, key, key.versions[0])
    sample = json.loads((SAMPLES / "key-new-version.eventgrid.json").read_text())[0]
    (event,) = published
    assert set(event) == set(sample) and set(event["data"]) == set(sample["data"])
    assert event["eventType"] == NEW_VERSION and event["subject"] == "soon"
    assert event["data"]["Id"] == s.key_id("soon", s.vid("s1"))
    assert event["topic"].endswith(f"/providers/Microsoft.KeyVault/vaults/{s.VAULT}")
    assert len(event["eventTime"].split(".")[1]) == 8  # seven digits and Z, as Event Grid writes it


def test_the_event_subscription_comes_from_infra() -> None:
    spec = event_subscription()
    assert spec.name == "cmk-rotation"
    assert set(spec.included_event_types) == {NEW_VERSION, NEAR_EXPIRY, EXPIRED}
    assert spec.delivery_schema == "EventGridSchema"
    assert 1 <= spec.max_delivery_attempts <= 30 and 1 <= spec.ttl_minutes <= 1440
    assert spec.dead_letter_container == "eventgrid-deadletters"


def test_serve_on_a_busy_port_names_it_and_how_to_pick_another() -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = subprocess.run(
            [sys.executable, "-m", "devstack", "serve", "--port", str(port), "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert ran.returncode == 2, ran.stderr
    [line] = ran.stderr.strip().splitlines()
    assert f"127.0.0.1:{port} is already in use" in line and "--port" in line
    assert "Errno" not in line


def test_serve_refuses_fewer_than_one_instance() -> None:
    from devstack.__main__ import main

    assert main(["serve", "--instances", "0", "--port", "0", "--audit-log", "-"]) == 2


def test_serve_with_instances_refuses_when_a_later_instance_port_is_busy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Instance i serves HTTP on --port + i - 1: the second's port taken stops serve at once."""
    from devstack.__main__ import main
    from devstack.serve import instance_ports

    assert instance_ports(7071, 3) == [7071, 7072, 7073]
    first, *others = instance_ports(0, 3)
    assert first == 0 and len(set(others)) == 2 and 0 not in others  # free ports, the first's at bind
    base, taken = _free_then_taken()
    with taken:
        assert main(["serve", "--instances", "2", "--port", str(base), "--audit-log", "-"]) == 2
    assert f"127.0.0.1:{base + 1} is already in use" in capsys.readouterr().err


def _free_then_taken() -> tuple[int, socket.socket]:
    """A free loopback port whose next one this test holds (other processes share the machine)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        taken = socket.socket()
        try:
            taken.bind(("127.0.0.1", base + 1))
        except OSError:
            taken.close()
            continue
        taken.listen()
        return base, taken
    raise AssertionError("no pair of free ports")


def test_an_instance_stops_when_its_parent_is_gone() -> None:
    """`serve` killed outright (SIGKILL, a crash) leaves its extra instances to init: each
    must notice and stop, or it keeps taking the queue's messages with nobody to stop it."""
    import os
    import signal
    import subprocess
    import sys

    child = (
        "import os, threading; from devstack.instances import stop_with_parent; "
        "stop = threading.Event(); stop_with_parent(stop, os.getppid(), every=0.05); "
        "print(os.getpid(), flush=True); stop.wait(60); print('stopped', flush=True)"
    )
    parent = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)"  # serve's stand-in, a real process killed below
    repo = Path(__file__).resolve().parents[2]
    starter = subprocess.Popen([sys.executable, "-c", parent], cwd=repo, stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    orphan = int(starter.stdout.readline())  # the child is watching its parent
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    assert starter.stdout.readline().strip() == "stopped"  # the orphan's last line, then its exit
    for _ in range(100):  # reaped by init (or a subreaper) once it has exited
        try:
            os.kill(orphan, 0)
        except ProcessLookupError:
            break
        threading.Event().wait(0.05)  # a real process exiting: nothing of ours to wait on
    else:
        raise AssertionError(f"instance {orphan} still running after its parent died")


def test_the_parent_watch_leaves_a_live_parent_alone() -> None:
    from devstack.instances import stop_with_parent

    stop = threading.Event()
    asked: list[int] = []

    def same_parent() -> int:
        asked.append(1)
        if len(asked) == 3:
            stop.set()  # ends the watch after three looks, none of which saw a change
        return 42

    stop_with_parent(stop, 42, every=0.001, parent_of_this=same_parent).join(5)
    assert len(asked) == 3
