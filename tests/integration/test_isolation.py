"""A test never sees another's leftovers: the first test here leaves state of every kind in the
emulator and in Azurite, the second (after it on the same worker: one xdist group, file order)
finds none of it. The `stack` fixture's reset and wipe are what this proves."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.settings import Settings
from tests.conftest import TEST_CONFIG, Stack
from tests.integration.test_azurite import stored
from tests.integration.test_emulator_arm import registries
from tests.scenarios import SUB_A, key, key_id, registry, scenario, version

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("isolation")]


def test_one_test_leaves_state_of_every_kind_behind(stack: Stack) -> None:
    stack.load(scenario({"acr-cmk": key(version("v1"))}, registries=[registry("reg1", key_id("acr-cmk"))]))
    assert [r.name for r in registries(SUB_A).list()] == ["reg1"]  # a call in the log
    stack.admin.add_fault(method="DELETE", pathRegex="/nothing$", status=500)
    stack.admin.set_throttling(True)
    stack.admin.configure(armPageSize=3, eventGridTimeScale=0.5, lroShapes={"Microsoft.Compute": "body200"})
    service = stack.service()
    service.ensure_storage()
    service.requests_queue.send_message("left behind")
    service.runs.table.upsert_entity({"PartitionKey": "p", "RowKey": "r"})
    assert all(stored(stack.storage))


def test_the_next_test_finds_none_of_it(stack: Stack) -> None:
    admin = stack.admin
    world: dict[str, Any] = admin.state()
    assert not any(world.get(kind) for kind in ("vaults", "registries", "batchAccounts", "containerGroups"))
    assert admin.faults() == [] and admin.calls()["total"] == 0 and admin.events() == []
    assert admin.throttling()["enabled"] is False
    expected = Settings()
    expected.update(TEST_CONFIG)
    assert admin.config() == expected.describe()
    assert stored(stack.storage) == ([], [], [])
