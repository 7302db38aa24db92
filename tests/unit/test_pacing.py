"""The per-subscription pacer, with an injected clock (nothing sleeps for real)."""

from __future__ import annotations

from typing import Any
from unittest.mock import Mock

import pytest
from azure.core.pipeline import PipelineContext, PipelineRequest, PipelineResponse
from azure.core.rest import HttpRequest
from azure.core.utils import CaseInsensitiveDict

from rotation.azure.pacing import REFILL_PER_SECOND, RESERVE, Pacer, PacingPolicy, call_kind, write_answered

SUB = "00000000-0000-0000-0000-00000000000a"
OTHER = "00000000-0000-0000-0000-00000000000b"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_calls_go_at_once_while_the_budget_is_healthy(clock: Clock) -> None:
    pacer = Pacer(clock, clock.sleep)
    for _ in range(5):
        pacer.before(SUB, "writes")
        pacer.after(SUB, "writes", 200, {"x-ms-ratelimit-remaining-subscription-writes": "150"})
    assert clock.slept == []


def test_a_429_holds_every_worker_of_that_subscription_until_retry_after(clock: Clock) -> None:
    pacer = Pacer(clock, clock.sleep)
    pacer.after(SUB, "reads", 429, {"Retry-After": "3"})
    assert pacer.before(SUB, "reads") == pytest.approx(3.0)
    # the other subscription and the other bucket are not held
    assert pacer.before(OTHER, "reads") == 0
    assert pacer.before(SUB, "writes") == 0


def test_a_low_budget_spaces_calls_at_the_refill_rate(clock: Clock) -> None:
    pacer = Pacer(clock, clock.sleep)
    pacer.after(SUB, "writes", 200, {"x-ms-ratelimit-remaining-subscription-writes": "3"})
    waits = [pacer.before(SUB, "writes") for _ in range(4)]
    spacing = 1.0 / REFILL_PER_SECOND["writes"]
    assert waits == pytest.approx([0.0, spacing, spacing, spacing])
    # once ARM says the bucket refilled, calls go at once again
    pacer.after(SUB, "writes", 200, {"x-ms-ratelimit-remaining-subscription-writes": "180"})
    clock.now += 1
    assert pacer.before(SUB, "writes") == 0


def test_headers_that_are_not_numbers_are_ignored(clock: Clock) -> None:
    pacer = Pacer(clock, clock.sleep)
    pacer.after(SUB, "reads", 200, {"x-ms-ratelimit-remaining-subscription-reads": "²"})
    pacer.after(SUB, "reads", 429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert pacer.before(SUB, "reads") == pytest.approx(1.0)  # a date: the pacer waits 1 s


def test_retry_after_is_capped(clock: Clock) -> None:
    pacer = Pacer(clock, clock.sleep)
    pacer.after(SUB, "reads", 429, {"Retry-After": "86400"})
    assert pacer.before(SUB, "reads") == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("GET", "reads"),
        ("HEAD", "reads"),
        ("PATCH", "writes"),
        ("PUT", "writes"),
        ("POST", "writes"),
        ("DELETE", "deletes"),
    ],
)
def test_call_kinds_follow_arm_buckets(method: str, kind: str) -> None:
    assert call_kind(method) == kind


def test_headroom_follows_the_budget_arm_reported_for_the_subscription(clock: Clock) -> None:
    pacer = Pacer(clock, clock.sleep)
    pacer.after(SUB, "reads", 200, {"x-ms-ratelimit-remaining-subscription-reads": "240"})
    assert pacer.headroom(SUB) is None  # the write budget is not known yet: lanes keep their start
    pacer.after(SUB, "writes", 200, {"x-ms-ratelimit-remaining-subscription-writes": "199"})
    assert pacer.headroom(SUB) == 120  # a target reads twice: the reads are the smaller budget
    pacer.after(SUB, "reads", 200, {"x-ms-ratelimit-remaining-subscription-reads": "249"})
    pacer.after(SUB, "writes", 200, {"x-ms-ratelimit-remaining-subscription-writes": "30"})
    assert pacer.headroom(SUB) == 30
    pacer.after(SUB, "writes", 429, {"Retry-After": "2"})  # refused, no budget header
    assert pacer.headroom(SUB) == 0
    assert pacer.headroom(OTHER) is None


def test_the_bucket_is_spent_to_its_reserve_then_calls_wait_for_the_refill(clock: Clock) -> None:
    pacer = Pacer(clock, clock.sleep)
    pacer.before(SUB, "writes")
    pacer.after(SUB, "writes", 200, {"x-ms-ratelimit-remaining-subscription-writes": "30"})
    waits = [pacer.before(SUB, "writes") for _ in range(30)]
    free = 30 - RESERVE  # every token but the reserve, at once
    assert waits[:free] == [0.0] * free
    assert waits[free:] == pytest.approx([1.0 / REFILL_PER_SECOND["writes"]] * RESERVE)


def test_calls_under_way_when_arm_reported_count_against_the_bucket(clock: Clock) -> None:
    pacer = Pacer(clock, clock.sleep)
    for _ in range(6):  # six sent; the first answer says 10 are left, five may not be counted
        pacer.before(SUB, "writes")
    pacer.after(SUB, "writes", 200, {"x-ms-ratelimit-remaining-subscription-writes": "10"})
    waits = [pacer.before(SUB, "writes") for _ in range(4)]
    assert waits[:3] == [0.0] * 3 and waits[3] > 0  # 10 - 5 - RESERVE = 3 go at once
    for _ in range(8):  # answers without a budget header; a call given up is not under way
        pacer.abandoned(SUB, "writes")
    pacer.after(SUB, "writes", 200, {"x-ms-ratelimit-remaining-subscription-writes": "10"})
    assert [pacer.before(SUB, "writes") for _ in range(8)] == [0.0] * 8


def pipeline_request(method: str, url: str) -> PipelineRequest[Any]:
    return PipelineRequest(HttpRequest(method, url), PipelineContext(None))


def answered(
    request: PipelineRequest[Any], status: int, headers: dict[str, str]
) -> PipelineResponse[Any, Any]:
    response = Mock(status_code=status, headers=CaseInsensitiveDict(headers))
    return PipelineResponse(request.http_request, response, request.context)


def test_the_policy_paces_the_subscription_its_request_named(clock: Clock) -> None:
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    policy = PacingPolicy(pacer)
    url = f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/rg?api-version=1"
    first = pipeline_request("PATCH", url)
    policy.on_request(first)
    first.http_request.url = (
        "https://management.azure.com/elsewhere"  # what the answer is for was decided before
    )
    policy.on_response(first, answered(first, 429, {"Retry-After": "7"}))
    other = pipeline_request("PATCH", url.replace(SUB, OTHER))
    policy.on_request(other)
    assert clock.slept == []  # another subscription goes at once
    policy.on_exception(other)
    policy.on_request(pipeline_request("PUT", url))
    assert clock.slept == [7.0]  # the 429 held the next write of that subscription


def test_a_call_that_failed_is_no_longer_counted_in_flight(clock: Clock) -> None:
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    policy = PacingPolicy(pacer)
    url = f"https://management.azure.com/subscriptions/{SUB}/x"
    for _ in range(3):
        request = pipeline_request("GET", url)
        policy.on_request(request)
        policy.on_exception(request)
    last = pipeline_request("GET", url)
    policy.on_request(last)
    policy.on_response(last, answered(last, 200, {"x-ms-ratelimit-remaining-subscription-reads": "3"}))
    # nothing left in flight: the bucket ARM reported is what the next call sees (3 left, 2 kept)
    policy.on_request(pipeline_request("GET", url))
    assert clock.slept == []


def test_the_calling_target_is_told_when_arm_answered_its_write(clock: Clock) -> None:
    """The lanes count a target past its write no more against the write budget; a 429 (ARM
    refused it, nothing spent) and a read tell nothing."""
    policy = PacingPolicy(Pacer(clock=clock, sleep=clock.sleep))
    url = f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/rg/x?api-version=1"
    told: list[str] = []

    def call(method: str, status: int) -> None:
        request = pipeline_request(method, url)
        policy.on_request(request)
        policy.on_response(request, answered(request, status, {}))

    call("PATCH", 201)  # no target asked: nobody to tell, nothing raised
    token = write_answered.set(lambda: told.append("wrote"))
    try:
        call("GET", 200)
        call("PATCH", 429)
        assert told == []
        call("PATCH", 201)
        call("PUT", 409)  # answered: ARM counted it
        assert told == ["wrote", "wrote"]
    finally:
        write_answered.reset(token)


def test_an_answer_overtaken_by_a_newer_calls_answer_does_not_undo_what_that_one_counted(
    clock: Clock,
) -> None:
    """Answers come back in another order than their calls went. ARM answered call 3 that 7
    are left; call 1's answer (9 left) arriving after it must not raise the budget back: it
    would let through calls ARM then refuses. Calls 1 and 2 were still open when call 3's answer
    came, so they stay counted as unseen (whether ARM took them first cannot be told for sure)."""
    pacer = Pacer(clock, clock.sleep)
    numbers = [pacer.admit(SUB, "writes")[1] for _ in range(3)]
    assert numbers == [1, 2, 3]
    header = "x-ms-ratelimit-remaining-subscription-writes"
    pacer.after(SUB, "writes", 200, {header: "7"}, sent=3)
    pacer.after(SUB, "writes", 200, {header: "9"}, sent=1)
    pacer.after(SUB, "writes", 200, {header: "8"}, sent=2)
    assert pacer.headroom(SUB) == 7
    waits = [pacer.before(SUB, "writes") for _ in range(4)]
    assert waits[:3] == [0.0] * 3 and waits[3] > 0  # 7 - 2 unseen - RESERVE = 3 at once, not 7
    # A newer call's answer is believed, the calls let through after it not yet counted in it.
    pacer.after(SUB, "writes", 200, {header: "6"}, sent=7)
    assert pacer.headroom(SUB) == 6
