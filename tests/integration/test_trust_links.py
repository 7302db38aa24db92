"""Issue 21, items 1, 3 and 4: a hostile or broken answer from "ARM" or "Key Vault" (the
emulator's fault API rewrites headers and links, drips or bloats bodies) never sends a token
elsewhere, never holds a run past its budget, never fills memory.

Foreign hosts: `*.test` names are served by the emulator, which records every call and whether
it carried an `Authorization` header; `127.0.0.2` is a listener here that records every
connection; a vault that is not allowed is served by the emulator like any other.
"""

from __future__ import annotations

import inspect
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseTimeoutError

import function_app
from devstack.functions_host import http_request
from rotation.azure.budget import BudgetExhausted, door_budget, run_budget
from rotation.azure.links import MAX_PAGES
from rotation.azure.vault import read_key_state
from rotation.model.errors import ForeignLink, PagingRefused, ResponseTooLarge
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from tests import scenarios as s
from tests.conftest import Stack

pytestmark = pytest.mark.integration
ARM = "management.azure.com"
API = "2023-07-01"
REGISTRIES = "Microsoft.ContainerRegistry/registries"
KEY = s.key_id("acr-cmk")
LIST_PATH = rf"/subscriptions/{s.SUB_A}/providers/{REGISTRIES}$"


class Recorder:
    """A TCP listener on another loopback address that records every connection it accepts."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.sock = socket.create_server((host, 0))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    listener = Recorder()
    yield listener
    listener.close()


def foreign_links(recorder: Recorder) -> list[str]:
    return [
        "https://evil.test/page2",
        f"https://{ARM}.evil.test/subscriptions/{s.SUB_A}/providers/{REGISTRIES}?page=2",
        f"https://{recorder.host}:{recorder.port}/page2",
        f"http://{ARM}/subscriptions/{s.SUB_A}/providers/{REGISTRIES}?page=2",  # not https
        f"https://{ARM}:8443/subscriptions/{s.SUB_A}/providers/{REGISTRIES}?page=2",  # another origin
    ]


def assert_tokens_stayed_home(stack: Stack, recorder: Recorder, *homes: str) -> None:
    """No call reached any host but `homes`, and nothing connected to the recorder."""
    calls = stack.admin.calls()["calls"]
    strays = [c for c in calls if c["host"] not in (*homes, "identity")]
    assert strays == [], strays
    assert recorder.connections == 0


def estate(count: int = 1) -> dict[str, Any]:
    old, new = s.version("old", created="-300d"), s.version("new", created="-1h")
    registries = [s.registry(f"acr{i:02d}", s.key_id("acr-cmk", s.vid("old"))) for i in range(count)]
    return s.scenario(keys={"acr-cmk": s.key(old, new)}, registries=registries)


def run(stack: Stack, **fields: Any):
    request = new_request(parse_key_id(KEY), "cli", "pytest", **fields)
    return stack.service().reconciler.run(request)


# -- 1. tokens go only to Azure ----------------------------------------------------------------


def test_an_arm_next_link_to_another_host_is_never_followed(stack: Stack, recorder: Recorder) -> None:
    stack.load(estate(3))
    stack.admin.configure(armPageSize=1)
    arm = stack.service().clients.arm()
    for link in foreign_links(recorder):
        stack.admin.clear_faults()
        stack.admin.clear_calls()
        stack.admin.add_fault(method="GET", host=ARM, pathRegex=LIST_PATH, nextLink=link)
        with pytest.raises(ForeignLink) as raised:
            list(arm.list_by_subscription(s.SUB_A, REGISTRIES, API))
        assert raised.value.code == "ForeignLink"
        assert "not followed" in str(raised.value)
        assert_tokens_stayed_home(stack, recorder, ARM)
        pages = [c for c in stack.admin.calls()["calls"] if c["host"] == ARM]
        assert len(pages) == 1  # the first page only


def test_a_foreign_next_link_in_discovery_is_reported_by_the_run(stack: Stack, recorder: Recorder) -> None:
    stack.load(estate(2))
    stack.admin.configure(armPageSize=1)
    stack.admin.add_fault(method="GET", host=ARM, pathRegex=LIST_PATH, nextLink="https://evil.test/p2")
    result = run(stack)
    codes = {e.get("code") for e in result.discovery_errors}
    assert "ForeignLink" in codes, result.discovery_errors
    assert result.status != "succeeded"
    assert_tokens_stayed_home(stack, recorder, ARM, s.VAULT_HOST)


@pytest.mark.parametrize("header", ["Azure-AsyncOperation", "Location"])
@pytest.mark.parametrize("host", ["evil.test", f"{ARM}.evil.test", "recorder"])
def test_an_lro_status_link_to_another_host_fails_the_step_and_sends_nothing(
    stack: Stack, recorder: Recorder, header: str, host: str
) -> None:
    stack.load(estate(1))
    origin = f"{recorder.host}:{recorder.port}" if host == "recorder" else host
    link = (
        f"https://{origin}/subscriptions/{s.SUB_A}/providers/Microsoft.ContainerRegistry/operationStatuses/x"
    )
    headers: dict[str, str | None] = {header: link}
    if header == "Location":  # Location-only polling: the answer names no operation status
        headers["Azure-AsyncOperation"] = None
    stack.admin.add_fault(method="PATCH", host=ARM, pathRegex="registries/acr00", headers=headers)
    result = run(stack)
    [step] = result.steps
    assert step.outcome == "failed" and step.error_code == "ForeignLink", step
    assert origin.split(":")[0] in (step.error or "")
    assert result.status == "failed"
    assert_tokens_stayed_home(stack, recorder, ARM, s.VAULT_HOST)


def test_a_key_vault_next_link_to_a_vault_not_allowed_is_never_followed(stack: Stack) -> None:
    other = f"{s.OTHER_VAULT}.vault.azure.net"
    stack.set(ROTATION_ALLOWED_VAULTS=s.VAULT_HOST)
    versions = [s.version(f"v{i}", created=f"-{100 - i}d") for i in range(30)]
    stack.load(s.scenario(keys={"acr-cmk": s.key(*versions)}, other_vault_keys={"acr-cmk": s.key(*versions)}))
    for link in (
        f"https://{other}/keys/acr-cmk/versions?api-version=7.6&maxresults=25",
        "https://evil.test/keys/acr-cmk/versions",
        "https://127.0.0.2/keys/acr-cmk/versions",
    ):
        stack.admin.clear_faults()
        stack.admin.clear_calls()
        stack.admin.add_fault(method="GET", host=s.VAULT_HOST, pathRegex="/versions$", nextLink=link)
        service = stack.service()
        with pytest.raises(ForeignLink):
            read_key_state(service.clients.keys(f"https://{s.VAULT_HOST}"), parse_key_id(KEY))
        calls = stack.admin.calls()["calls"]
        assert [c for c in calls if c["host"] not in (s.VAULT_HOST, "identity")] == []
    result = run(stack)  # the run records it
    assert result.status == "failed" and result.error is not None and result.error.code == "ForeignLink"


# -- 3. every wait ends inside the budget ------------------------------------------------------


def test_an_endless_key_vault_next_link_stops_at_the_first_repeat(stack: Stack) -> None:
    versions = [s.version(f"v{i}", created=f"-{100 - i}d") for i in range(30)]
    stack.load(s.scenario(keys={"acr-cmk": s.key(*versions)}))
    first = f"https://{s.VAULT_HOST}/keys/acr-cmk/versions?api-version=7.6&maxresults=25"
    stack.admin.add_fault(method="GET", host=s.VAULT_HOST, pathRegex="/versions$", nextLink=first)
    service = stack.service()
    with door_budget(10), pytest.raises(PagingRefused):
        read_key_state(service.clients.keys(f"https://{s.VAULT_HOST}"), parse_key_id(KEY))
    lists = [c for c in stack.admin.calls()["calls"] if c["path"].endswith("/versions")]
    assert len(lists) == 2  # the first page, then its link once: the same link again is refused


def test_key_vault_paging_stops_at_the_page_limit(stack: Stack) -> None:
    limit = 7  # the mechanism with a small limit: the product's is links.MAX_PAGES (below)
    versions = [s.version(f"v{i}", created=f"-{2000 - i}h") for i in range(limit + 5)]
    stack.load(s.scenario(keys={"acr-cmk": s.key(*versions)}))
    stack.admin.configure(keyVaultPageSize=1)  # a new link on every page, never the same one
    service = stack.service()
    with pytest.raises(PagingRefused, match=f"more than {limit} pages"):
        read_key_state(service.clients.keys(f"https://{s.VAULT_HOST}"), parse_key_id(KEY), max_pages=limit)
    lists = [c for c in stack.admin.calls()["calls"] if c["path"].endswith("/versions")]
    assert len(lists) == limit


def test_the_key_vault_page_limit_is_a_thousand_pages() -> None:
    assert MAX_PAGES == 1000  # 25,000 versions of 25 a page (rotation/azure/links.py)
    assert inspect.signature(read_key_state).parameters["max_pages"].default == MAX_PAGES


def test_a_huge_retry_after_on_an_lro_ends_inside_the_run_budget(stack: Stack) -> None:
    stack.load(estate(1))
    stack.set(ROTATION_TIME_BUDGET_SECONDS="5")
    stack.admin.add_fault(
        method="PATCH", host=ARM, pathRegex="registries/acr00", headers={"Retry-After": "999999"}
    )
    started = time.monotonic()
    result = run(stack)
    assert time.monotonic() - started < 5
    [step] = result.steps  # written, its outcome unknown when the budget ended (issue 22)
    assert step.outcome == "in-flight" and step.error_code == "TimeBudgetExhausted", step
    assert result.status == "interrupted"


def test_a_retry_after_on_polls_is_capped_by_the_setting(stack: Stack) -> None:
    stack.load(estate(1))
    stack.admin.configure(lroSeconds=0.3)
    stack.set(ROTATION_MAX_RETRY_AFTER_SECONDS="0.1")
    stack.admin.add_fault(
        method="GET", host=ARM, pathRegex="operationStatuses", headers={"Retry-After": "999999"}
    )
    started = time.monotonic()
    result = run(stack)
    assert time.monotonic() - started < 5
    assert result.status == "succeeded", [st.to_dict() for st in result.steps]


def test_an_lro_that_never_finishes_stops_at_the_run_budget(stack: Stack) -> None:
    stack.load(estate(1))
    stack.admin.configure(lroSeconds=3600)
    stack.set(ROTATION_TIME_BUDGET_SECONDS="5")
    started = time.monotonic()
    result = run(stack)
    assert time.monotonic() - started < 6
    [step] = result.steps  # written, its outcome unknown when the budget ended (issue 22)
    assert step.outcome == "in-flight" and step.error_code == "TimeBudgetExhausted", step
    assert result.status == "interrupted"


def test_a_dripping_answer_ends_at_the_budget(stack: Stack) -> None:
    stack.load(estate(1))
    stack.admin.add_fault(method="GET", host=s.VAULT_HOST, pathRegex="/keys/acr-cmk/?$", dripMs=500)
    client = stack.service().clients.keys(f"https://{s.VAULT_HOST}")
    started = time.monotonic()
    with run_budget(2), pytest.raises(BudgetExhausted):
        client.get_key("acr-cmk")
    assert time.monotonic() - started < 4


def test_a_dripping_answer_ends_at_the_read_timeout_without_a_budget(stack: Stack, monkeypatch) -> None:
    from rotation.azure import clients as clients_module

    monkeypatch.setattr(clients_module, "AZURE_TIMEOUTS", (5.0, 2.0))  # the product's constant, shortened
    stack.load(estate(1))
    stack.admin.add_fault(method="GET", host=s.VAULT_HOST, pathRegex="/keys/acr-cmk/?$", dripMs=400)
    client = stack.service().clients.keys(f"https://{s.VAULT_HOST}")
    started = time.monotonic()
    with pytest.raises(ServiceResponseTimeoutError):
        client.get_key("acr-cmk")
    assert time.monotonic() - started < 4


def test_the_plan_route_answers_503_when_its_door_budget_runs_out(stack: Stack) -> None:
    stack.load(estate(1))
    stack.set(ROTATION_DOOR_BUDGET_SECONDS="1")
    stack.service()  # storage ready before the budget matters
    stack.admin.add_fault(host=s.VAULT_HOST, latencyMs=3000)
    body = json.dumps({"keyId": KEY}).encode()
    response = function_app.plan_rotation(http_request("POST", "/api/rotations/plan", body=body))
    answer = json.loads(response.get_body())
    assert response.status_code == 503, answer
    assert answer["error"]["code"] == "BudgetExhausted"
    assert int(response.headers["Retry-After"]) > 0


# -- 4. an answer's size is capped -------------------------------------------------------------


def test_a_256_mib_arm_list_fails_at_the_cap_without_buffering_it(stack: Stack) -> None:
    stack.load(estate(1))
    cap = 1024 * 1024
    stack.set(ROTATION_MAX_RESPONSE_BYTES=str(cap))
    stack.admin.add_fault(method="GET", host=ARM, pathRegex=LIST_PATH, bodyBytes=256 * 1024 * 1024)
    arm = stack.service().clients.arm()
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge) as raised:
            list(arm.list_by_subscription(s.SUB_A, REGISTRIES, API))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert raised.value.code == "ResponseTooLarge"
    assert peak < 4 * cap, peak  # the cap and a read's chunk, not 256 MiB
