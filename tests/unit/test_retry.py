"""Error classification, remediation hints and the retry policy (no network)."""

from __future__ import annotations

import json

import pytest
import tenacity
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from rotation.azure.kinds.batch import BatchAccounts
from rotation.azure.kinds.registry import Registries
from rotation.azure.retry import Deadline, RetryPolicy, call, classify, remediation
from rotation.azure.vault import KEY_VAULT_HINTS
from rotation.model.errors import RotationError, ServiceFailed, TransientCondition


class Answer:
    """The parts of an HTTP response HttpResponseError reads (a test double for a value)."""

    def __init__(self, status: int, code: str = "Oops", headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.reason = "reason"
        self.headers = headers or {}
        self._body = json.dumps({"error": {"code": code, "message": f"{code} happened"}})
        self.request = None

    def text(self, encoding: str | None = None) -> str:
        return self._body

    def body(self) -> bytes:
        return self._body.encode()


def error(status: int, code: str = "Oops", **headers: str) -> HttpResponseError:
    return HttpResponseError(response=Answer(status, code, headers))


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses(status: int) -> None:
    info = classify(error(status))
    assert info.transient and info.unreachable and info.status == status


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_permanent_statuses_fail_at_once(status: int) -> None:
    info = classify(error(status, "Something"))
    assert not info.transient and info.code == "Something"


def test_arm_busy_conflict_is_waited_out() -> None:
    assert classify(error(409, "AnotherOperationInProgress")).transient


def test_retry_after_seconds_ms_and_dates() -> None:
    assert classify(error(429, **{"Retry-After": "7"})).retry_after == 7
    assert classify(error(503, **{"retry-after-ms": "1500"})).retry_after == 1.5
    assert classify(error(429, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})).retry_after == 0


def test_connection_errors_and_credentials() -> None:
    assert classify(ServiceRequestError("boom")).transient
    assert classify(ConnectionError()).unreachable
    info = classify(ClientAuthenticationError("no managed identity endpoint"))
    assert not info.transient and info.unreachable and info.code == "CredentialUnavailable"
    assert classify(TransientCondition("still updating", retry_after=2)).retry_after == 2


def test_remediation_hints_for_permanent_errors() -> None:
    registry, batch = Registries().hints, BatchAccounts().hints
    assert "assign the user-assigned identity back" in (
        remediation(classify(error(400, "InvalidIdentity")), registry) or ""
    )
    assert "Key Vault" in (remediation(classify(error(403)), KEY_VAULT_HINTS) or "")
    assert "rotation role" in (remediation(classify(error(403)), batch) or "")
    assert remediation(classify(error(503)), registry) is None
    # a kind's hint is asked before the general ones, and only for its own status and code
    assert "Batch account" in (remediation(classify(error(400, "Anything")), batch) or "")
    assert remediation(classify(error(400, "Anything")), registry) is None


def test_the_products_own_errors_classify_as_they_say() -> None:
    info = classify(RotationError("no such thing", code="Missing", remediation="look elsewhere"))
    assert (info.code, info.transient, info.message) == ("Missing", False, "no such thing")
    wrapped = ServiceFailed("reading k", classify(error(503)))
    assert classify(wrapped) == wrapped.info and wrapped.info.status == 503 and wrapped.transient
    assert str(wrapped).startswith("reading k: 503")


class FakeTime:
    """The clock and the sleep `call` is given: a wait moves the clock on, nothing sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_call_retries_transient_then_succeeds() -> None:
    fake, attempts = FakeTime(), []

    def flaky() -> str:
        attempts.append(fake.now)
        if len(attempts) < 3:
            raise error(503)
        return "ok"

    retries = []
    policy = RetryPolicy(1.0, 8.0, 5, sleep=fake.sleep)
    assert call(flaky, policy=policy, on_retry=lambda n, i, s: retries.append(n)) == "ok"
    assert len(attempts) == 3 and retries == [1, 2]
    first, second = fake.slept  # equal jitter: half to all of 1 s, then of 2 s
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0


def test_call_does_not_retry_permanent_errors() -> None:
    fake, attempts = FakeTime(), []

    def forbidden() -> None:
        attempts.append(1)
        raise ResourceNotFoundError("gone")

    with pytest.raises(ResourceNotFoundError):
        call(forbidden, policy=RetryPolicy(1.0, 8.0, 5, sleep=fake.sleep))
    assert len(attempts) == 1 and fake.slept == []


def test_call_honours_retry_after_and_stops_at_the_deadline() -> None:
    fake, attempts = FakeTime(), []

    def throttled() -> None:
        attempts.append(fake.now)
        raise error(429, **{"Retry-After": "20"})

    deadline = Deadline(50, clock=fake.clock)
    with pytest.raises(HttpResponseError):
        call(throttled, policy=RetryPolicy(1.0, 8.0, 10, sleep=fake.sleep), deadline=deadline)
    # 20 s and up to 1 s of jitter each: a third wait would end past the 50 s budget
    assert len(attempts) == 3 and all(20 <= wait <= 21 for wait in fake.slept) and len(fake.slept) == 2
    assert deadline.remaining() > 0


def attempt(number: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    state.attempt_number = number
    return state


def test_exponential_delay_is_jittered_and_capped() -> None:
    backoff = RetryPolicy(1.0, 8.0, 6).backoff()
    assert all(0.5 <= backoff(attempt(1)) <= 1.0 for _ in range(20))
    assert all(1.0 <= backoff(attempt(2)) <= 2.0 for _ in range(20))
    assert all(4.0 <= backoff(attempt(10)) <= 8.0 for _ in range(20))
    assert len({round(backoff(attempt(3)), 6) for _ in range(20)}) > 1  # jittered


def test_a_retry_after_gets_at_most_a_second_of_jitter() -> None:
    jitter = RetryPolicy(2.0, 30.0, 6).after_hint()
    assert all(0 <= jitter(attempt(1)) <= 1.0 for _ in range(20))


def test_the_deadline_runs_on_the_clock_it_is_given() -> None:
    now = [100.0]
    deadline = Deadline(30, clock=lambda: now[0])
    assert deadline.remaining() == 30 and not deadline.expired()
    now[0] += 31
    assert deadline.expired()


class CountedPolicy(RetryPolicy):
    """A policy that counts how often a retrying was set up from it."""

    built = 0

    def backoff(self) -> tenacity.wait.wait_base:
        CountedPolicy.built += 1
        return super().backoff()


def test_a_call_that_succeeds_at_once_sets_up_no_retrying() -> None:
    """Most calls of a run succeed first time: the retrying (tenacity's objects, the policy's
    waits and stops) is built only once an attempt failed, and then decides as it always did."""
    fake, attempts = FakeTime(), []
    CountedPolicy.built = 0
    policy = CountedPolicy(1.0, 8.0, 3, sleep=fake.sleep)
    assert call(lambda: "ok", policy=policy) == "ok"
    assert CountedPolicy.built == 0

    def failing() -> None:
        attempts.append(1)
        raise error(503)

    retries: list[int] = []
    with pytest.raises(HttpResponseError) as raised:
        call(failing, policy=policy, on_retry=lambda n, i, s: retries.append(n))
    assert CountedPolicy.built == 1 and len(attempts) == 3 and retries == [1, 2] and len(fake.slept) == 2
    assert raised.value.status_code == 503

    interrupted = []

    def interrupt() -> None:  # not an Exception: never retried, raised as it came
        interrupted.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call(interrupt, policy=policy)
    assert interrupted == [1]
