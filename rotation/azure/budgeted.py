"""The clients' transports with the door's and the run's time budgets (budget.py) on top: each
attempt's timeouts capped to what is left, and for Key Vault and ARM an answer read whole within
its read timeout and no further than the answer limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from azure.core.configuration import ConnectionConfiguration
from azure.core.exceptions import AzureError, ServiceResponseTimeoutError
from azure.core.pipeline.transport import HttpTransport
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import ReadTimeoutError

from rotation import waits
from rotation.azure import budget
from rotation.azure.answers import read_errors
from rotation.azure.transport import Urllib3Transport
from rotation.model.errors import ResponseTooLarge


class Budgeted(HttpTransport):
    """Either transport below it (urllib3's, libcurl's), with each attempt's timeouts capped to
    the door's budget.

    For Key Vault and ARM (`answer_limit` set) also: the run's budget counts (budget.run_budget);
    an answer's body must arrive whole within the read timeout (a socket timeout only bounds each
    read: an answer dripping a byte a second would never end) and is read no further than
    `answer_limit` bytes; every wait between calls (`sleep`: LRO polling) is capped at `max_wait`
    and must end inside the budget. How an answer is held to the limit is the transport's
    (`_send_azure`).
    """

    connection_config: ConnectionConfiguration

    def __init__(
        self,
        *,
        answer_limit: int | None = None,
        max_wait: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleeper: Callable[[float], None] = waits.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.answer_limit, self.max_wait = answer_limit, max_wait
        self._clock, self._sleeper = clock, sleeper

    @property
    def _azure(self) -> bool:
        return self.answer_limit is not None

    def send(self, request: Any, **kwargs: Any) -> Any:
        left = budget.azure_remaining() if self._azure else budget.remaining()
        if left is not None:
            budget.check(f"{request.method} {_host(request.url)}", azure=self._azure)
            for name, default in (
                ("connection_timeout", self.connection_config.timeout),
                ("read_timeout", self.connection_config.read_timeout),
            ):
                kwargs[name] = min(kwargs.get(name) or default, left)
        if not self._azure:
            return self._send(request, **kwargs)
        return self._send_azure(request, **kwargs)

    def _send_azure(self, request: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _send(self, request: Any, **kwargs: Any) -> Any:
        try:
            return super().send(request, **kwargs)  # type: ignore[safe-super]  # the transport next in the MRO
        except AzureError:
            budget.check(
                f"{request.method} {_host(request.url)} answered", azure=self._azure
            )  # a timeout the budget caused
            raise

    def sleep(self, duration: float) -> None:
        """A wait between calls (an LRO's polls): capped, and never past the budget."""
        self._sleeper(budget.bounded_wait(duration, "the next poll", cap=self.max_wait))


class BudgetedTransport(Budgeted, Urllib3Transport):
    """Storage's, the credential's and the outcome topic's transport (urllib3)."""

    def _send_azure(self, request: Any, **kwargs: Any) -> Any:
        if kwargs.get("stream"):
            return self._send(request, **kwargs)
        whole = kwargs.get("read_timeout") or self.connection_config.read_timeout
        ends = self._clock() + whole
        response = self._send(request, **{**kwargs, "stream": True})
        what = f"{request.method} {_host(request.url)}"
        response.keep(
            read_answer(response.internal_response, self.answer_limit or 0, ends, self._clock, what)
        )
        return response


def read_answer(
    response: BaseHTTPResponse, limit: int, ends: float, clock: Callable[[], float], what: str
) -> bytes:
    """The body of a streamed answer, read whole by `ends` and no further than `limit` bytes
    (decoded: a compressed answer counts what it expands to). The connection goes back to the
    pool once the answer is read to its end; it is closed when the answer is refused, never
    handed back half read."""
    declared = response.headers.get("Content-Length", "")
    try:
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLarge(
                f"{what}: the answer declares {declared} bytes, over the {limit}-byte limit"
            )
        body = bytearray()
        while chunk := _read_some(response, what):
            body += chunk
            if len(body) > limit:
                raise ResponseTooLarge(f"{what}: the answer is over the {limit}-byte limit; not read further")
            if clock() > ends:
                budget.check(f"{what} answered", azure=True)
                raise ServiceResponseTimeoutError(f"{what}: the answer did not arrive whole in time")
    except BaseException:
        response.close()
        raise
    response.release_conn()
    return bytes(body)


def _read_some(response: BaseHTTPResponse, what: str) -> bytes:
    """What has arrived of the body (at least a byte; b"" at its end), with the errors azure-core
    would have raised had it read the body itself, so retry.py classifies them the same."""
    try:
        return response.read1(65536, decode_content=True)
    except Exception as exc:
        if isinstance(exc, ReadTimeoutError | TimeoutError):
            budget.check(f"{what} answered", azure=True)
        mapped = read_errors(what, exc)
        if mapped is None:
            raise
        raise mapped from exc


def _host(url: str) -> str:
    return urlsplit(url).hostname or "storage"
