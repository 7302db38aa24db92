"""Issue 21 items 1, 3, 4 without the network: link checks, page guards, the run budget's waits,
the Retry-After caps, the answer reader's size and time limits, and the two settings."""

from __future__ import annotations

import io
import time

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import HttpResponseError, ServiceResponseError, ServiceResponseTimeoutError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.rest import HttpRequest
from urllib3.response import HTTPResponse

from rotation.azure import budget
from rotation.azure.budgeted import BudgetedTransport, read_answer
from rotation.azure.links import HostGuardPolicy, PageGuard, follow, origin
from rotation.azure.pacing import Pacer
from rotation.azure.retry import RetryPolicy, call
from rotation.config import ConfigError, load_settings
from rotation.model.errors import ForeignLink, PagingRefused, ResponseTooLarge
from tests.unit.test_config import BASE
from tests.unit.test_retry import error

ARM = "management.azure.com"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- links ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.test/x",
        f"https://{ARM}.evil.test/x",
        "https://127.0.0.2/x",
        f"http://{ARM}/x",  # not https
        f"https://{ARM}:8443/x",  # another origin
        f"https://user@{ARM}.evil.test/x",
        "https://[::1/x",  # unparseable
        "//evil.test/x",
    ],
)
def test_a_link_elsewhere_is_refused_naming_its_host(link: str) -> None:
    with pytest.raises(ForeignLink) as raised:
        follow(link, ARM, "a nextLink")
    assert raised.value.code == "ForeignLink" and not raised.value.transient
    assert "not followed" in str(raised.value) and ARM in str(raised.value)


@pytest.mark.parametrize("link", [f"https://{ARM}/x?a=1", "HTTPS://MANAGEMENT.AZURE.COM:443/x"])
def test_a_link_to_the_same_host_is_followed(link: str) -> None:
    assert follow(link, ARM) == link


def test_origin_keeps_a_port_other_than_443() -> None:
    assert origin("https://Contoso-CMK.vault.azure.net/keys") == "contoso-cmk.vault.azure.net"
    assert origin("https://127.0.0.1:8443/") == "127.0.0.1:8443"


def test_a_pager_refuses_a_repeated_link_and_stops_at_its_page_limit() -> None:
    guard = PageGuard(ARM, "the list")
    assert guard.next("/subscriptions/x?page=3") == "/subscriptions/x?page=3"  # joined to the client's base
    with pytest.raises(ForeignLink):
        guard.next("//evil.test/p2")
    guard.next(f"https://{ARM}/p2")
    with pytest.raises(PagingRefused, match="repeats"):
        guard.next(f"https://{ARM}/p2")
    limited = PageGuard(ARM, "the list", max_pages=3)
    limited.next(f"https://{ARM}/p2")
    limited.next(f"https://{ARM}/p3")
    with pytest.raises(PagingRefused, match="more than 3 pages"):
        limited.next(f"https://{ARM}/p4")


def test_the_host_guard_refuses_before_the_policy_it_wraps_runs() -> None:
    seen: list[str] = []

    class Inner(SansIOHTTPPolicy):
        def on_request(self, request) -> None:
            seen.append(request.http_request.url)

    guard = HostGuardPolicy(ARM, Inner())
    guard.on_request(PipelineRequest(HttpRequest("GET", f"https://{ARM}/ok"), None))  # type: ignore[arg-type]
    with pytest.raises(ForeignLink):
        guard.on_request(PipelineRequest(HttpRequest("GET", "https://evil.test/x"), None))  # type: ignore[arg-type]
    assert seen == [f"https://{ARM}/ok"]


# -- the run's budget and its waits ------------------------------------------------------------


def test_the_run_budget_bounds_azure_calls_but_not_storage() -> None:
    clock = Clock()
    with budget.run_budget(5, clock=clock):
        assert budget.remaining() is None  # storage: the door's budget only
        assert budget.azure_remaining() == 5
        clock.now += 6
        budget.check("a storage write")  # the run may still record how it ended
        with pytest.raises(budget.BudgetExhausted):
            budget.check("GET vault", azure=True)
    assert budget.azure_remaining() is None


def test_a_wait_is_capped_and_never_ends_past_the_budget() -> None:
    assert budget.bounded_wait(999999, "a poll", cap=60) == 60  # outside any budget: the cap
    clock = Clock()
    with budget.door_budget(100, clock=clock), budget.run_budget(10, clock=clock):
        assert budget.bounded_wait(999999, "a poll", cap=3) == 3
        with pytest.raises(budget.BudgetExhausted, match=r"a wait of 60\.0s with 10\.0s left"):
            budget.bounded_wait(999999, "a poll", cap=60)


def test_the_transport_sleeps_between_polls_within_cap_and_budget() -> None:
    clock = Clock()
    transport = BudgetedTransport(answer_limit=1024, max_wait=2.0, clock=clock, sleeper=clock.sleep)
    transport.sleep(999999)
    assert clock.slept == [2.0]
    with budget.run_budget(1.5, clock=clock), pytest.raises(budget.BudgetExhausted):
        transport.sleep(999999)
    assert clock.slept == [2.0]  # refused at once, not slept to the end


def test_the_pacer_caps_a_429s_retry_after_and_keeps_inside_the_budget() -> None:
    clock = Clock()
    pacer = Pacer(clock, clock.sleep, max_wait=5.0)
    sub = "00000000-0000-0000-0000-00000000000a"
    pacer.after(sub, "writes", 429, {"Retry-After": "999999"})
    assert pacer.before(sub, "writes") == 5.0
    pacer.after(sub, "writes", 429, {"Retry-After": "999999"})
    with budget.run_budget(2, clock=clock), pytest.raises(budget.BudgetExhausted):
        pacer.before(sub, "writes")


def test_retry_caps_a_huge_retry_after_and_stops_before_the_budget_ends() -> None:
    clock, attempts = Clock(), []

    def throttled() -> None:
        attempts.append(clock.now)
        raise error(429, **{"Retry-After": "999999"})

    with pytest.raises(HttpResponseError):
        call(throttled, policy=RetryPolicy(0.01, 0.05, 3, sleep=clock.sleep, max_retry_after=5))
    assert len(attempts) == 3 and all(5 <= waited <= 6 for waited in clock.slept)  # 5 s and jitter
    attempts.clear()
    clock.slept.clear()
    with budget.run_budget(10), pytest.raises(HttpResponseError):
        call(throttled, policy=RetryPolicy(0.01, 0.05, 3, sleep=clock.sleep, max_retry_after=60))
    assert len(attempts) == 1 and clock.slept == []  # 60 s does not fit in 10 s: no wait, no retry


# -- reading an answer -------------------------------------------------------------------------


def answer(body: bytes, *, declared: bool = True, drip: Clock | None = None) -> HTTPResponse:
    class Dripping(io.BytesIO):
        def read1(self, size: int | None = -1) -> bytes:  # a byte per read, a second apart
            if drip is not None:
                drip.now += 1
            return super().read1(1)

        read = read1

    headers = {"Content-Length": str(len(body))} if declared else {}
    return HTTPResponse(Dripping(body), headers=headers, preload_content=False)


def test_an_answer_is_read_whole_within_the_limit() -> None:
    assert read_answer(answer(b'{"value": []}'), 1024, 200.0, Clock(), "GET arm") == b'{"value": []}'


@pytest.mark.parametrize("declared", [True, False])
def test_an_answer_over_the_limit_is_refused_without_reading_past_it(declared: bool) -> None:
    body = b"x" * (300 * 1024)
    response = answer(body, declared=declared)
    with pytest.raises(ResponseTooLarge) as raised:
        read_answer(response, 64 * 1024, 200.0, Clock(), "GET arm")
    assert raised.value.code == "ResponseTooLarge"
    assert response.closed  # the connection is not handed back half read


def test_a_connection_cut_mid_answer_is_the_error_azure_core_would_raise() -> None:
    class Cut(io.BytesIO):
        def read1(self, size: int | None = -1) -> bytes:
            raise ConnectionResetError("reset by peer")

        read = read1

    response = HTTPResponse(Cut(b""), headers={}, preload_content=False)
    with pytest.raises(ServiceResponseError):  # transient, as before: retry.py retries it
        read_answer(response, 1024, 200.0, Clock(), "GET arm")


def test_a_dripping_answer_ends_at_its_deadline() -> None:
    clock = Clock()
    with pytest.raises(ServiceResponseTimeoutError):
        read_answer(answer(b"x" * 100, drip=clock), 1024, clock.now + 5, clock, "GET vault")
    assert clock.now <= 107
    clock = Clock()
    with budget.run_budget(3, clock=clock), pytest.raises(budget.BudgetExhausted):
        read_answer(answer(b"x" * 100, drip=clock), 1024, clock.now + 3, clock, "GET vault")


# -- settings ----------------------------------------------------------------------------------


def test_the_two_settings_have_defaults_and_are_validated() -> None:
    settings = load_settings(BASE)
    assert settings.max_retry_after_seconds == 60 and settings.max_response_bytes == 33554432
    custom = load_settings(
        {**BASE, "ROTATION_MAX_RETRY_AFTER_SECONDS": "5", "ROTATION_MAX_RESPONSE_BYTES": "65536"}
    )
    assert (custom.max_retry_after_seconds, custom.max_response_bytes) == (5, 65536)
    for name, bad in (
        ("ROTATION_MAX_RETRY_AFTER_SECONDS", "-1"),
        ("ROTATION_MAX_RETRY_AFTER_SECONDS", "soon"),
        ("ROTATION_MAX_RESPONSE_BYTES", "1024"),
        ("ROTATION_MAX_RESPONSE_BYTES", "32MiB"),
    ):
        with pytest.raises(ConfigError) as raised:
            load_settings({**BASE, name: bad})
        assert str(raised.value).startswith(name)


# -- the host guard in every Key Vault and ARM client --------------------------------------------


class Credential:
    """A token for any scope (the typed clients' pipelines ask before their custom slot)."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("token", int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, **kwargs: object) -> AccessTokenInfo:
        return AccessTokenInfo("token", int(time.time()) + 3600)


def test_every_key_vault_and_arm_client_refuses_another_host_before_sending() -> None:
    """The guard raises inside the pipeline, before the transport: nothing reaches the network
    (evil.test does not resolve; a send would fail with a connection error instead)."""
    from rotation.azure.clients import Clients

    clients = Clients(load_settings(BASE), credential=Credential())
    foreign = HttpRequest("GET", "https://evil.test/keys/k/versions")
    with pytest.raises(ForeignLink):
        clients.keys("https://contoso-cmk.vault.azure.net").send_request(foreign)
    management = clients.container_instances("00000000-0000-0000-0000-00000000000a")
    with pytest.raises(ForeignLink):
        management._client.send_request(HttpRequest("GET", f"https://{ARM}.evil.test/x"))
    with pytest.raises(ForeignLink):
        clients.arm().get("https://127.0.0.2/subscriptions/x", "2023-07-01")


def test_a_link_with_no_origin_is_refused_even_where_none_is_expected() -> None:
    # the check without a URL parse must not take "https:///" for the origin ""
    with pytest.raises(ForeignLink):
        follow("https:///x", "")
