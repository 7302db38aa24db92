"""An azure-core transport on libcurl (pycurl), for the Key Vault and ARM clients: per call about a
third of the CPU urllib3 spends (docs/performance.md), most of the exchange done in C with the GIL
let go.

It keeps the urllib3 transport's contract (transport.py): the same request on the wire, both of
azure-core's response interfaces (answers.py), no redirect followed, no retry, and the errors
RequestsTransport raised for the same failures, so retry.py classifies them the same:
ServiceRequestError when nothing of the request was sent (no name, no connection, TLS, proxy),
ServiceRequestTimeoutError when the connection was not made in time, ServiceResponseError when
the connection broke once the request was on its way, ServiceResponseTimeoutError when the whole
answer did not arrive in time.

Two differences, both bounds the urllib3 transport gets from budgeted.py: the read timeout is for
the whole exchange (an answer dripping a byte a second ends), and an answer is read whole before
`send` returns (a streamed answer streams from memory), refused past `answer_limit` decoded
bytes with ResponseTooLarge.
"""

from __future__ import annotations

from typing import Any

import pycurl
from azure.core.configuration import ConnectionConfiguration
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest as RestHttpRequest

from rotation import waits
from rotation.azure.answers import LegacyResponse, RestResponse, described
from rotation.azure.budgeted import Budgeted
from rotation.azure.curlanswer import CurlAnswer, Gathered
from rotation.azure.curlhandles import SHARED, Handle, Handles
from rotation.azure.curlrequest import Routes, prepare
from rotation.azure.transport import call_settings
from rotation.model.errors import ResponseTooLarge

_READS = frozenset(("GET", "HEAD", "OPTIONS"))  # what libcurl may send again on a fresh connection


class CurlTransport(HttpTransport):
    """Sends on `handles` (the process-wide pool unless given). Takes azure-core's connection
    settings (connection_timeout, read_timeout, connection_verify, connection_cert,
    connection_data_block_size) at construction and per call; `answer_limit` per call."""

    def __init__(self, *, handles: Handles | None = None, **kwargs: Any) -> None:
        self.connection_config = ConnectionConfiguration(**kwargs)
        self.handles = handles if handles is not None else SHARED
        self.routes = Routes()

    def open(self) -> None:
        pass  # handles connect on first use

    def close(self) -> None:
        pass  # the pool outlives any one client: its connections serve the next

    def __enter__(self) -> CurlTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def send(self, request: Any, *, stream: bool = False, **kwargs: Any) -> Any:
        connect, whole, verify, cert = call_settings(self.connection_config, kwargs)
        limit = kwargs.pop("answer_limit", None)
        handle = self.handles.take()
        try:
            gathered = handle.gathered
            gathered.start(limit, resend=request.method.upper() in _READS)
            gathered.proxied = prepare(
                handle, request, self.routes, verify=verify, cert=cert, timeouts=(connect, whole)
            )
            outcome = _performed(handle, request)
        except BaseException:
            handle.close()  # a failure mid-request: its state is not trusted again
            raise
        self.handles.give(handle)
        if isinstance(outcome, Exception):
            raise outcome  # its cause set; raised once the handle went back: its connections serve the next
        return self._answer(request, outcome, stream)

    def _answer(self, request: Any, internal: CurlAnswer, stream: bool) -> Any:
        block = self.connection_config.data_block_size
        if isinstance(request, RestHttpRequest):
            if not stream:
                return RestResponse.whole(request, internal, block)
            return RestResponse(request, internal, block)
        response = LegacyResponse(request, internal, block)
        if not stream:
            response.keep(internal.read())
        return response


def _performed(handle: Handle, request: Any) -> CurlAnswer | Exception:
    """The exchange on a prepared handle: its answer, or the error to raise for its failure."""
    gathered = handle.gathered
    running = waits.current_hub()
    try:
        if running is None:
            handle.curl.perform()
        elif (error := running.transfer(handle.curl)) is not None:
            raise error  # the same failure perform() raises
    except pycurl.error as exc:
        handle.settled = None  # reset before the next request: nothing of this one is trusted
        failure = _failed(request, gathered, exc)
        failure.__cause__ = exc
        gathered.start(None, resend=False)  # an idle handle holds no answer
        return failure
    return gathered.answer()


def _failed(request: Any, gathered: Gathered, exc: pycurl.error) -> Exception:
    """The error for a failed exchange: too large an answer, or azure-core's for the failure."""
    what = described(request)
    limit = gathered.limit
    if gathered.refused == "declared":
        return ResponseTooLarge(
            f"{what}: the answer declares {gathered.declared} bytes, over the {limit}-byte limit"
        )
    if gathered.refused == "over":
        return ResponseTooLarge(f"{what}: the answer is over the {limit}-byte limit; not read further")
    code = exc.args[0] if exc.args else 0
    message = f"{what}: {exc.args[1] if len(exc.args) > 1 else exc}"
    if gathered.proxied:
        message += " (through the environment's proxy)"
    if code == pycurl.E_OPERATION_TIMEDOUT:
        if gathered.sent:
            return ServiceResponseTimeoutError(message, error=exc)
        return ServiceRequestTimeoutError(message, error=exc)
    if gathered.sent:  # the request was on its way: it may have been applied
        return ServiceResponseError(message, error=exc)
    return ServiceRequestError(message, error=exc)


class BudgetedCurlTransport(Budgeted, CurlTransport):
    """Key Vault's and ARM's transport (libcurl): it reads every answer whole within the read
    timeout itself, and refuses one past the limit even when streamed."""

    def _send_azure(self, request: Any, **kwargs: Any) -> Any:
        return self._send(request, answer_limit=self.answer_limit, **kwargs)
