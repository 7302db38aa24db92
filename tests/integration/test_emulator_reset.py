"""The emulator's reset fences calls still held from before it: a write an earlier test left held
by a latency fault must not land on the next test's world; and a test ends a hold when it is
ready (docs/scenario.md, "Faults across a scenario load")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from tests.integration.test_emulator_arm import acr_update, registries
from tests.scenarios import key, key_id, registry, scenario, version, vid

pytestmark = pytest.mark.integration

OLD, NEW = key_id("acr-cmk", vid("v1")), key_id("acr-cmk", vid("v2"))
WORLD = scenario(
    {"acr-cmk": key(version("v1", created="-50d"), version("v2"))}, registries=[registry("reg1", OLD)]
)


def held_write() -> Any:
    """The registry moved to NEW by the real SDK, with no retry: the one request is the one held."""
    poller = registries(retry_total=0).begin_update("rg-acr", "reg1", acr_update(NEW), polling_interval=0.05)
    return poller.result()


def wait_until_held(stack: Any, fault: int) -> None:
    """Until the emulator has taken the held call (its one-use fault is spent before the hold)."""
    deadline = time.monotonic() + 30
    while next(f for f in stack.admin.faults() if f["id"] == fault)["count"] != 0:
        assert time.monotonic() < deadline, "the write never reached the emulator"
        time.sleep(0.02)  # the emulator is a real process; the SDK's request reaches it on its own


@contextmanager
def a_held_write(stack: Any) -> Iterator[Future[Any]]:
    """The registry's write under way, held by a minute's latency fault."""
    stack.load(WORLD)
    fault = stack.admin.add_fault(method="PATCH", pathRegex="/registries/reg1$", latencyMs=60_000, count=1)
    with ThreadPoolExecutor(1) as pool:
        write = pool.submit(held_write)
        wait_until_held(stack, fault)
        yield write


def test_a_write_held_across_a_reset_does_not_land_on_the_next_world(stack: Any) -> None:
    with a_held_write(stack) as write:
        stack.admin.reset(WORLD)  # the next test's world: a registry of the same name
        with pytest.raises((ServiceRequestError, ServiceResponseError)):
            write.result(timeout=30)  # closed unanswered at the reset, not a minute later
    (reg,) = stack.admin.state()["registries"]
    assert reg["keyId"] == OLD
    assert stack.admin.calls()["total"] == 0  # nothing of the earlier world in the new call log


def test_a_released_hold_lands_at_once(stack: Any) -> None:
    with a_held_write(stack) as write:
        assert stack.admin.release_holds() == 1
        write.result(timeout=30)  # answered at the release, not a minute later
    (reg,) = stack.admin.state()["registries"]
    assert reg["keyId"] == NEW
    assert stack.admin.release_holds() == 0  # nothing left held


# -- POST /reset: a test's clean slate in one call ----------------------------------------------


EMPTY: dict[str, Any] = {"registries": []}


def test_reset_clears_faults_throttling_calls_and_world_and_sets_the_knobs(stack: Any) -> None:
    stack.load(WORLD)
    list(registries().list())  # a call in the log
    stack.admin.add_fault(method="DELETE", pathRegex="/nothing$", status=500)
    stack.admin.set_throttling(True)
    stack.admin.configure(armPageSize=3, eventGridTimeScale=0.5)
    assert stack.admin.calls()["total"] >= 1  # the list, after a token
    assert stack.admin.reset(EMPTY, {"lroSeconds": 0.05}) is True
    assert stack.admin.state()["registries"] == []
    assert stack.admin.faults() == [] and stack.admin.calls()["total"] == 0
    assert stack.admin.throttling()["enabled"] is False and stack.admin.events() == []
    knobs = stack.admin.config()
    assert knobs["lroSeconds"] == 0.05 and knobs["armPageSize"] == 100  # given; the rest default
    assert knobs["eventGridTimeScale"] == 1.0


def test_reset_without_config_keeps_the_knobs(stack: Any) -> None:
    stack.admin.configure(armPageSize=3)
    stack.admin.reset(EMPTY)
    assert stack.admin.config()["armPageSize"] == 3


def test_the_same_reset_on_an_untouched_emulator_has_nothing_to_do(stack: Any) -> None:
    assert stack.admin.reset(EMPTY, {"lroSeconds": 0.05}) is True  # not the fixture's slate
    assert stack.admin.reset(EMPTY, {"lroSeconds": 0.05}) is False
    stack.admin.state(), stack.admin.calls(), stack.admin.faults()  # reads touch nothing
    assert stack.admin.reset(EMPTY, {"lroSeconds": 0.05}) is False
    assert stack.admin.reset(EMPTY, {"lroSeconds": 0.1}) is True  # another slate


@pytest.mark.parametrize(
    "touch",
    [
        lambda admin: admin.add_fault(method="DELETE", pathRegex="/nothing$", status=500),
        lambda admin: admin.set_throttling(True),
        lambda admin: admin.configure(armPageSize=3),
        lambda admin: admin.load_scenario(WORLD),
        lambda admin: list(registries().list()),  # a call through the proxy
    ],
    ids=["fault", "throttling", "config", "scenario", "arm-call"],
)
def test_anything_but_a_read_makes_the_next_reset_do_its_work(stack: Any, touch: Any) -> None:
    stack.admin.reset(EMPTY)
    touch(stack.admin)
    assert stack.admin.reset(EMPTY) is True
    assert stack.admin.faults() == [] and not stack.admin.throttling()["enabled"]
    assert stack.admin.state()["registries"] == [] and stack.admin.calls()["total"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"config": {}},
        {"scenario": {}, "other": 1},
        {"scenario": {}, "config": []},
        {"scenario": {"registries": "x"}},
        {"scenario": {}, "config": {"armPageSize": 0}},
        {"scenario": {}, "config": {"nope": 1}},
    ],
)
def test_a_refused_reset_changes_nothing(stack: Any, body: dict[str, Any]) -> None:
    stack.load(WORLD)
    stack.admin.configure(armPageSize=3)
    fault = stack.admin.add_fault(method="DELETE", pathRegex="/nothing$", status=500)
    with pytest.raises(RuntimeError, match="400"):
        stack.admin.post("/reset", body)
    assert len(stack.admin.state()["registries"]) == 1
    assert stack.admin.config()["armPageSize"] == 3
    assert [f["id"] for f in stack.admin.faults()] == [fault]
    assert stack.admin.reset(EMPTY) is True  # still marked as touched
