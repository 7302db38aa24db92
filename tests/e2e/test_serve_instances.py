"""`python -m devstack serve --instances 2` (`make serve INSTANCES=2`) driven from outside: every
instance of the scaled-out app serves its HTTP routes (instance i on its own port, all printed
at the start and in the env file), with the one set of keys, and a rotation asked of the second
instance runs through the queue that both take."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import scenarios as s
from tests.e2e.test_local_stack import BUILD, Served, children, until

pytestmark = pytest.mark.xdist_group("local-stack")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    stack = Served(tmp_path_factory.mktemp("two-instances"), "--instances", "2")
    yield stack
    if stack.process.poll() is None:
        stack.process.kill()
        stack.process.wait()


def on(served: Served, url: str) -> Served:
    """The same stack, asked through one instance's URL."""
    served.env["LOCAL_FUNCTIONS_URL"] = url
    return served


def status_id(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}/admin/host/status", timeout=30) as answer:  # loopback
        return str(json.loads(answer.read())["id"])


def test_every_instance_serves_http_with_the_shared_keys(served: Served) -> None:
    first, *others = served.env["LOCAL_FUNCTIONS_URLS"].split(",")
    assert first == served.env["LOCAL_FUNCTIONS_URL"] and len(others) == 1
    assert [status_id(u) for u in (first, *others)] == ["instance-1", "instance-2"]
    printed = Path(served.log.name).read_text()
    assert f"instance 1: {first}/api/..." in printed and f"instance 2: {others[0]}/api/..." in printed
    body = {"keyId": s.key_id("acr-cmk")}
    for url in (first, *others):
        assert on(served, url).http("POST", "/api/rotations/plan", body, key=None)[0] == 401
        status, plan = on(served, url).http("POST", "/api/rotations/plan", body)
        assert status == 200 and {(x["target"], x["action"]) for x in plan["steps"]} >= {(BUILD, "update")}


def test_a_rotation_asked_of_the_second_instance_runs_through_the_queue(served: Served) -> None:
    first, second = served.env["LOCAL_FUNCTIONS_URLS"].split(",")
    status, started = on(served, second).http("POST", "/api/rotations", {"keyId": s.key_id("acr-cmk")})
    assert status == 202, started
    path = f"/api/rotations/{started['runId']}"
    done = until(
        lambda: (r := on(served, first).http("GET", path)[1]) and r["status"] == "succeeded" and r,
        "the run to finish",
        timeout=120,
    )
    assert done["summary"].get("verified") == 1  # the registry pinned to the old version moved


def test_ctrl_c_stops_every_instance(served: Served) -> None:
    helpers = children(served.process.pid)
    assert len(helpers) >= 2  # Azurite and the second instance run as children
    served.process.send_signal(signal.SIGINT)
    assert served.process.wait(timeout=120) == 0
    until(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in helpers), "every child to exit", timeout=30
    )
