"""The one retry layer: error classification and tenacity policies.

Transient (408, 429, 5xx, connection errors, ARM's "another operation in progress" 409):
back off exponentially with jitter, honour Retry-After up to `max_retry_after`
(ROTATION_MAX_RETRY_AFTER_SECONDS), never past the run's time budget.
Permanent (400, 401, 403, 404, other 409): fail at once, with a remediation sentence.
The SDK clients are built with their own retries off (see clients.py) so attempts do not
multiply. Non-idempotent calls (rotate, delete, create) are never wrapped here: their
callers read the state again after an unclear failure and decide.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import tenacity
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy as AzureRetryPolicy

from rotation import waits
from rotation.azure import budget
from rotation.model.errors import TRANSIENT_STATUS, ErrorInfo, Hint, RotationError

log = logging.getLogger("rotation.retry")

_BUSY_CODES = {
    "anotheroperationinprogress",
    "operationnotallowed",
    "conflictingoperation",
    "containergrouptransitioning",
    "resourcebusy",
}


_AZURE_RETRY = AzureRetryPolicy(retry_total=0)  # only for its Retry-After parsing


def _retry_after(exc: HttpResponseError) -> float | None:
    """azure-core's reading of Retry-After (seconds or an HTTP date) and retry-after-ms."""
    if exc.response is None:
        return None
    try:
        response = PipelineResponse(None, exc.response, None)  # type: ignore[arg-type]
        return _AZURE_RETRY.get_retry_after(response)  # type: ignore[type-var]
    except (ValueError, TypeError):  # a header no parser understands: no hint, back off as usual
        return None


def _message(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())[:1000]


def classify(exc: BaseException) -> ErrorInfo:
    """Decide once whether an error is worth retrying; keep the service's status and code."""
    if isinstance(exc, RotationError):
        return exc.info
    if isinstance(exc, ServiceRequestError | ServiceResponseError | ConnectionError | TimeoutError):
        return ErrorInfo(True, True, None, "ConnectionError", _message(exc))
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        # The credential could not get a token (no identity, identity endpoint down).
        return ErrorInfo(False, True, None, "CredentialUnavailable", _message(exc))
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        code = getattr(getattr(exc, "error", None), "code", None)
        if status == 200:  # a long-running operation that ended Failed or Canceled
            return ErrorInfo(False, False, status, code or "OperationFailed", _message(exc))
        transient = status in TRANSIENT_STATUS or (status == 409 and (code or "").lower() in _BUSY_CODES)
        unreachable = status in TRANSIENT_STATUS
        return ErrorInfo(transient, unreachable, status, code, _message(exc), _retry_after(exc))
    return ErrorInfo(False, False, None, type(exc).__name__, _message(exc))


# Hints any kind of target can need; a consumer kind adds its own (`hints`), Key Vault its
# own (vault.KEY_VAULT_HINTS), and those are asked first.
GENERAL_HINTS: tuple[Hint, ...] = (
    Hint(
        401,
        None,
        "Authentication failed: check the function's managed identity (AZURE_CLIENT_ID) or your az login.",
    ),
    Hint(
        403,
        None,
        "The rotation identity lacks permission on this resource: grant the rotation role at its scope "
        "(infra/README.md), or tag the resource cmk-rotation=off to leave it alone.",
    ),
    Hint(404, None, "The resource or key no longer exists: run a new plan to refresh the inventory."),
    Hint(409, None, "Another change is in progress on the resource: the next run will retry it."),
    Hint(
        200,
        None,
        "The Azure operation ended Failed; the target stays on its previous version. Check the "
        "resource's activity log, fix the cause and replay.",
    ),
)


def remediation(info: ErrorInfo, hints: Sequence[Hint] = ()) -> str | None:
    """A sentence telling a person what to do about a permanent error (None for transient ones):
    the first of `hints` (the kind's or Key Vault's) that matches, then the general ones."""
    if info.transient:
        return None
    for hint in (*hints, *GENERAL_HINTS):
        if hint.matches(info):
            return hint.text
    if info.unreachable:
        return "Key Vault or ARM could not be reached: check network access and the identity endpoint, then retry."
    return None


class Deadline:
    """The run's time budget: work is not started, and retries not slept, past it."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.seconds = seconds

    def remaining(self) -> float:
        return self.seconds - (self.clock() - self.started)

    def expired(self) -> bool:
        return self.remaining() <= 0


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 1.0
    maximum: float = 30.0
    attempts: int = 6
    # How a wait between attempts is spent: rotation/waits.py (the hub's, or time.sleep), or a
    # test's fake clock moving on.
    sleep: Callable[[float], None] = field(default=waits.sleep, compare=False, repr=False)
    max_retry_after: float = 60.0  # the longest single Retry-After honoured

    def backoff(self) -> tenacity.wait.wait_base:
        """Exponential with equal jitter: between half and all of min(maximum, initial x 2^(n-1))."""
        half, cap = self.initial / 2, self.maximum / 2
        return tenacity.wait_exponential(multiplier=half, max=cap) + tenacity.wait_random_exponential(
            multiplier=half, max=cap
        )

    def after_hint(self) -> tenacity.wait.wait_base:
        """The jitter added to a service's Retry-After, so retries that were told the same do not align."""
        return tenacity.wait_random(0, min(1.0, self.initial))


class _PastDeadline(tenacity.stop.stop_base):
    """Stop when the next wait would end past the deadline (tenacity's own timing stops read
    the real monotonic clock; this reads the deadline's, which a test can move)."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        return state.upcoming_sleep >= self.deadline.remaining()


def _failure(state: tenacity.RetryCallState) -> BaseException:
    """The exception of the attempt that just failed (tenacity only retries on one)."""
    failure = state.outcome.exception() if state.outcome is not None else None
    if failure is None:
        raise RuntimeError("tenacity asked about an attempt that did not fail")
    return failure


class _PastBudget(tenacity.stop.stop_base):
    """Stop when the next attempt would start after the door's or the run's budget (budget.py)."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        left = budget.azure_remaining()
        return left is not None and (retry_state.upcoming_sleep or 0.0) >= left


def call[T](
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    deadline: Deadline | None = None,
    what: str = "call",
    on_retry: Callable[[int, ErrorInfo, float], None] | None = None,
) -> T:
    """Run `fn`, retrying transient failures under `policy` and within `deadline`."""
    try:
        return fn()  # most calls succeed at once: the retrying below is built only after a failure
    except BaseException as exc:  # noqa: BLE001 - tenacity's own first attempt catches as much
        first = exc
    return _retrying(policy, deadline, what, on_retry)(_made(first, fn))


def _made[T](first: BaseException, fn: Callable[[], T]) -> Callable[[], T]:
    """`fn` as the retrying's attempts, the first of which was already made: it fails again as
    it did (same exception), so the retrying decides from attempt 1 as if it had made it."""
    pending = [first]

    def attempt() -> T:
        if pending:
            raise pending.pop()
        return fn()

    return attempt


def _retrying(
    policy: RetryPolicy,
    deadline: Deadline | None,
    what: str,
    on_retry: Callable[[int, ErrorInfo, float], None] | None,
) -> tenacity.Retrying:
    backoff, after_hint = policy.backoff(), policy.after_hint()

    def wait(state: tenacity.RetryCallState) -> float:
        hint = classify(_failure(state)).retry_after
        if hint is None:
            return backoff(state)
        return min(hint, policy.max_retry_after) + after_hint(state)

    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(policy.attempts) | _PastBudget()
    if deadline is not None:  # never sleep past the run's deadline, read on the deadline's clock
        stop = stop | _PastDeadline(deadline)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        info = classify(_failure(state))
        log.info(
            "retrying %s after attempt %d in %.2fs: %s",
            what,
            state.attempt_number,
            state.upcoming_sleep,
            info.summary(),
        )
        if on_retry:
            on_retry(state.attempt_number, info, state.upcoming_sleep)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: classify(exc).transient),
        wait=wait,
        stop=stop,
        before_sleep=before_sleep,
        sleep=policy.sleep,
        reraise=True,
    )
