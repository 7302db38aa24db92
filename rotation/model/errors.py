"""One error hierarchy. Every error the product raises is a `RotationError`: it carries a
machine-readable code, whether waiting can help (`transient`, `retry_after`) and, when known,
a sentence telling a person what to do. `rotation/azure/retry.py` classifies the Azure SDK's
errors into the same shape (`ErrorInfo`) once, so the audit trail, the CLI and HTTP answers
read every failure the same way."""

from __future__ import annotations

from dataclasses import dataclass

# HTTP statuses where trying again can help (a timeout, throttling, a server's failure): one
# declaration for Azure's calls (azure/retry.py) and the audit store's (storage/audit/store.py).
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ErrorInfo:
    """A failure as the run reports it, whatever raised it."""

    transient: bool
    unreachable: bool  # the service could not be reached or kept failing (5xx, 429, connection)
    status: int | None
    code: str | None
    message: str
    retry_after: float | None = None

    @property
    def final(self) -> bool:
        """A service's definitive refusal (400, 401, 403, 404): the same request fails the same
        way until a person changes something. Not a timeout, a conflict or our own exception."""
        return not self.transient and self.status in (400, 401, 403, 404)

    def summary(self) -> str:
        parts = [str(self.status) if self.status else None, self.code]
        head = " ".join(p for p in parts if p)
        return f"{head}: {self.message}" if head else self.message


@dataclass(frozen=True)
class Hint:
    """A remediation sentence for a permanent error: by HTTP status (None: any) and, optionally,
    the service's error code (compared lower-case). Consumer kinds declare their own."""

    status: int | None
    code: str | None
    text: str

    def matches(self, info: ErrorInfo) -> bool:
        return self.status in (None, info.status) and self.code in (None, (info.code or "").lower())


class RotationError(Exception):
    """Base of the product's errors. Subclasses set `code` and `transient` as class defaults."""

    code: str = ""
    transient: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        transient: bool | None = None,
        retry_after: float | None = None,
        remediation: str | None = None,
        cause: ErrorInfo | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code or type(self).code or type(self).__name__
        self.transient = type(self).transient if transient is None else transient
        self.retry_after = retry_after
        self.remediation = remediation
        self.cause = cause  # the classified failure this error reports, when it wraps one

    @property
    def info(self) -> ErrorInfo:
        """The failure this error stands for: the wrapped one, or this error itself."""
        if self.cause is not None:
            return self.cause
        return ErrorInfo(self.transient, False, None, self.code, str(self), self.retry_after)


class TransientCondition(RotationError):
    """A state worth waiting out (a target still updating)."""

    code = "InProgress"
    transient = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)


class StillRunning(TransientCondition):
    """A long-running write had not ended within the wait its caller allows (`Arm.write`'s
    `wait_at_most`): the operation goes on in Azure, and the target is read again."""


class ServiceFailed(RotationError):
    """A service call failed past its retries; `info` is the classified cause."""

    def __init__(self, what: str, info: ErrorInfo) -> None:
        super().__init__(f"{what}: {info.summary()}", code=info.code, transient=info.transient, cause=info)


class ForeignLink(RotationError):
    """An answer named a link (an LRO status URL, a `nextLink`) that is not https on the host the
    request went to: it is never followed, so no token goes to that host. Permanent."""

    code = "ForeignLink"

    def __init__(self, link_host: str, expected_host: str, what: str = "a link") -> None:
        super().__init__(
            f"{what} names {link_host or 'no host'}, not {expected_host}: not followed",
            remediation="An answer pointed outside the service the call was for; nothing was sent there. "
            "Check for a proxy or endpoint that rewrites answers before retrying.",
        )
        self.link_host = link_host


class PagingRefused(RotationError):
    """A list's paging went round in a circle or past its page limit. Permanent."""

    code = "PagingRefused"


class ResponseTooLarge(RotationError):
    """An answer's body was larger than ROTATION_MAX_RESPONSE_BYTES; it was not read further."""

    code = "ResponseTooLarge"
