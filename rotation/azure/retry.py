"""The one retry layer: error classification and tenacity policies.

Transient (408, 429, 5xx, connection errors, ARM's "another operation in progress" 409):
back off exponentially with jitter, honour Retry-After, never past the run's time budget.
Permanent (400, 401, 403, 404, other 409): fail at once, with a remediation sentence.
The SDK clients are built with their own retries off (see clients.py) so attempts do not
multiply. Non-idempotent calls (rotate, delete, create) are never wrapped here: their
callers read the state again after an unclear failure and decide.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import tenacity
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

log = logging.getLogger("rotation.retry")

_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_BUSY_CODES = {
    "anotheroperationinprogress",
    "operationnotallowed",
    "conflictingoperation",
    "containergrouptransitioning",
    "resourcebusy",
}


class TransientCondition(Exception):
    """Raised by our own code for a state worth waiting out (a target still updating)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class ErrorInfo:
    transient: bool
    unreachable: bool  # the service could not be reached or kept failing (5xx, 429, connection)
    status: int | None
    code: str | None
    message: str
    retry_after: float | None = None

    def summary(self) -> str:
        parts = [str(self.status) if self.status else None, self.code]
        head = " ".join(p for p in parts if p)
        return f"{head}: {self.message}" if head else self.message


def _retry_after(exc: BaseException) -> float | None:
    if isinstance(exc, TransientCondition):
        return exc.retry_after
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if scale == 1.0 else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


def _message(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())[:1000]


def classify(exc: BaseException) -> ErrorInfo:
    """Decide once whether an error is worth retrying; keep the service's status and code."""
    if isinstance(exc, TransientCondition):
        return ErrorInfo(True, False, None, "InProgress", str(exc), exc.retry_after)
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
        transient = status in _TRANSIENT_STATUS or (status == 409 and (code or "").lower() in _BUSY_CODES)
        unreachable = status in _TRANSIENT_STATUS
        return ErrorInfo(transient, unreachable, status, code, _message(exc), _retry_after(exc))
    return ErrorInfo(False, False, None, type(exc).__name__, _message(exc))


_HINTS: list[tuple[str | None, int | None, str | None, str]] = [
    # (target kind or None for any, status, error code (lower) or None, remediation)
    (
        "registry",
        400,
        "invalididentity",
        "The registry's encryption identity is no longer assigned to it: assign the user-assigned identity back "
        "(az acr identity assign) and grant it 'Key Vault Crypto Service Encryption User' on the key; see "
        "https://aka.ms/acr/cmk.",
    ),
    (
        "registry",
        400,
        "keyvaultaccessfailed",
        "The registry's identity cannot use the new key version: grant it 'Key Vault Crypto Service Encryption "
        "User' on the key (or get, wrapKey, unwrapKey in access policies) and check the vault firewall allows "
        "trusted services; see https://aka.ms/acr/cmk.",
    ),
    (
        "batch",
        400,
        None,
        "The Batch account could not use the key: check its managed identity has get, wrapKey and unwrapKey on the "
        "key and that the version is enabled; see https://learn.microsoft.com/azure/batch/batch-customer-managed-key.",
    ),
    (
        "containergroup",
        400,
        None,
        "The container group could not be created with the key: check its identity is assigned and can use the "
        "key; the saved spec is in the rotation-redeploy container.",
    ),
    (
        None,
        401,
        None,
        "Authentication failed: check the function's managed identity (AZURE_CLIENT_ID) or your az login.",
    ),
    (
        "keyvault",
        403,
        None,
        "The rotation identity lacks Key Vault permissions: grant the custom rotation role (keys read, rotate, "
        "update, read rotation policy) on the vault (infra/README.md).",
    ),
    (
        None,
        403,
        None,
        "The rotation identity lacks permission on this resource: grant the rotation role at its scope "
        "(infra/README.md), or tag the resource cmk-rotation=off to leave it alone.",
    ),
    (None, 404, None, "The resource or key no longer exists: run a new plan to refresh the inventory."),
    (None, 409, None, "Another change is in progress on the resource: the next run will retry it."),
    (
        None,
        200,
        None,
        "The Azure operation ended Failed; the target stays on its previous version. Check the "
        "resource's activity log, fix the cause and replay.",
    ),
]


def _kind_hints() -> list[tuple[str | None, int | None, str | None, str]]:
    """Remediation sentences kept as data in the kind modules (error code -> sentence; "" any code)."""
    from rotation.azure.kinds import disk_encryption_set, sql, storage

    return [
        (module.KIND, 400, code or None, text)
        for module in (storage, disk_encryption_set, sql)
        for code, text in module.REMEDIATION.items()
    ]


def remediation(info: ErrorInfo, kind: str | None) -> str | None:
    """A sentence telling a person what to do about a permanent error (None for transient ones)."""
    if info.transient:
        return None
    code = (info.code or "").lower()
    for hint_kind, status, hint_code, text in [*_HINTS, *_kind_hints()]:
        if hint_kind not in (None, kind) or status != info.status:
            continue
        if hint_code is None or hint_code == code:
            return text
    if info.unreachable:
        return "Key Vault or ARM could not be reached: check network access and the identity endpoint, then retry."
    return None


class Deadline:
    """The run's time budget: work is not started, and retries not slept, past it."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.seconds = seconds

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def expired(self) -> bool:
        return self.remaining() <= 0


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 1.0
    maximum: float = 30.0
    attempts: int = 6

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after + random.uniform(0, min(1.0, self.initial))  # noqa: S311 - jitter, not crypto
        ceiling = min(self.maximum, self.initial * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto


def call[T](
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    deadline: Deadline | None = None,
    what: str = "call",
    on_retry: Callable[[int, ErrorInfo, float], None] | None = None,
) -> T:
    """Run `fn`, retrying transient failures under `policy` and within `deadline`."""

    def wait(state: tenacity.RetryCallState) -> float:
        info = classify(state.outcome.exception())
        return policy.delay(state.attempt_number, info.retry_after)

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.attempts:
            return True
        return deadline is not None and state.upcoming_sleep >= deadline.remaining()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        info = classify(state.outcome.exception())
        log.info(
            "retrying %s after attempt %d in %.2fs: %s",
            what,
            state.attempt_number,
            state.upcoming_sleep,
            info.summary(),
        )
        if on_retry:
            on_retry(state.attempt_number, info, state.upcoming_sleep)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: classify(exc).transient),
        wait=wait,
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)
