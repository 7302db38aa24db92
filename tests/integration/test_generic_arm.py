"""rotation.azure.arm: generic ARM calls by resource id, against the emulator's registry routes
through the proxy, with the product's own Clients (credential, transport, no SDK retries)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from rotation.azure.retry import classify
from rotation.model.errors import StillRunning
from tests.conftest import Stack
from tests.scenarios import SUB_A, identity_id, key, key_id, registry, registry_id, scenario, version, vid

pytestmark = pytest.mark.integration
API = "2023-07-01"
TYPE = "Microsoft.ContainerRegistry/registries"


def estate(count: int = 3) -> dict:
    registries = [registry(f"acr{i:02d}", key_id("acr-cmk", vid("old"))) for i in range(count)]
    return scenario(
        keys={"acr-cmk": key(version("old"), version("new", created="-1d"))}, registries=registries
    )


def test_lists_every_page_gets_and_patches_a_registry(stack: Stack) -> None:
    stack.load(estate(5))
    stack.admin.configure(armPageSize=2)
    arm = stack.service().clients.arm()

    listed = list(arm.list_by_subscription(SUB_A, TYPE, API))
    assert sorted(r["name"] for r in listed) == [f"acr{i:02d}" for i in range(5)]
    calls = stack.admin.calls()["calls"]
    pages = [c for c in calls if c["method"] == "GET" and c["host"] == "management.azure.com"]
    assert len(pages) == 3  # 2 + 2 + 1, following nextLink

    rid = registry_id("acr00")
    body = {
        "properties": {
            "encryption": {
                "keyVaultProperties": {
                    "keyIdentifier": key_id("acr-cmk", vid("new")),
                    "identity": listed[0]["properties"]["encryption"]["keyVaultProperties"]["identity"],
                }
            }
        }
    }
    after = arm.begin_patch(rid, API, body).result()
    assert after is not None
    assert after["properties"]["encryption"]["keyVaultProperties"]["keyIdentifier"].endswith(vid("new"))
    again = arm.get(rid, API)
    assert again is not None
    assert again["properties"]["encryption"]["keyVaultProperties"]["keyIdentifier"].endswith(vid("new"))


def test_missing_resource_is_none_and_arm_errors_keep_their_code(stack: Stack) -> None:
    stack.load(estate(1))
    arm = stack.service().clients.arm()
    assert arm.get(registry_id("nope"), API) is None

    body = {
        "properties": {
            "encryption": {
                "keyVaultProperties": {
                    "keyIdentifier": key_id("acr-cmk", vid("new")),
                    "identity": identity_id("not-assigned"),
                }
            }
        }
    }
    with pytest.raises(HttpResponseError) as raised:
        arm.begin_patch(registry_id("acr00"), API, body).result()
    info = classify(raised.value)
    assert info.status == 400
    assert info.code
    assert not info.transient


def test_a_long_running_write_is_polled_once_when_it_is_done_by_the_first_wait(stack: Stack) -> None:
    # The operation takes 0.2 s and the client waits 0.3 s before its first poll: one poll, then
    # the final GET. azure-core's own polling would ask once at once ("InProgress") and again.
    stack.load(estate(1))
    stack.admin.configure(lroSeconds=0.2, retryAfter=0)
    stack.set(ROTATION_POLL_INTERVAL_SECONDS="0.3")
    arm = stack.service().clients.arm()
    rid = registry_id("acr00")
    current = arm.get(rid, API)
    assert current is not None
    identity = current["properties"]["encryption"]["keyVaultProperties"]["identity"]
    stack.admin.clear_calls()
    body = {
        "properties": {
            "encryption": {
                "keyVaultProperties": {"keyIdentifier": key_id("acr-cmk", vid("new")), "identity": identity}
            }
        }
    }
    arm.begin_patch(rid, API, body).result()
    polls = [
        c
        for c in stack.admin.calls()["calls"]
        if "operationStatuses" in c["path"] or "operationResults" in c["path"]
    ]
    assert len(polls) == 1


def test_a_write_polled_at_the_resource_decodes_what_it_read_once(stack: Stack) -> None:
    """The written check and the caller are handed the resource of the one read that ended the
    operation, not each a decoding of their own."""
    stack.load(estate(1))
    stack.admin.configure(lroSeconds=0.2, retryAfter=1)
    arm = stack.service().clients.arm()
    rid = registry_id("acr00")
    current = arm.get(rid, API)
    assert current is not None
    identity = current["properties"]["encryption"]["keyVaultProperties"]["identity"]
    new_key = key_id("acr-cmk", vid("new"))
    body = {
        "properties": {"encryption": {"keyVaultProperties": {"keyIdentifier": new_key, "identity": identity}}}
    }
    checked: list[dict] = []

    def shows_write(resource: dict) -> bool:
        checked.append(resource)
        return resource["properties"]["encryption"]["keyVaultProperties"]["keyIdentifier"] == new_key

    after = arm.write("PATCH", rid, API, body, shows_write=shows_write)
    assert after is not None and [after] == checked
    assert after is checked[0]


def test_a_write_polled_past_its_allowed_wait_is_left_running(stack: Stack) -> None:
    """`wait_at_most`: the polling gives up instead of waiting past it (StillRunning), and
    nothing goes on polling the operation afterwards."""
    stack.load(estate(1))
    stack.admin.configure(lroSeconds=600, retryAfter=1)  # as ARM answers: ask again in 1 s
    arm = stack.service().clients.arm()
    rid = registry_id("acr00")
    body = {
        "properties": {"encryption": {"keyVaultProperties": {"keyIdentifier": key_id("acr-cmk", vid("new"))}}}
    }
    stack.admin.clear_calls()
    with pytest.raises(StillRunning):
        arm.write("PATCH", rid, API, body, wait_at_most=0.2)  # the first poll would be past it
    calls = [c for c in stack.admin.calls()["calls"] if c["host"] == "management.azure.com"]
    assert [c["method"] for c in calls] == ["PATCH"], calls
    assert stack.admin.finish_operations() == 1  # it was still running, untouched
