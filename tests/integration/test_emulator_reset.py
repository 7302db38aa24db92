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
