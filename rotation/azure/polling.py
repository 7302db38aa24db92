"""Long-running ARM writes polled the way the service asks (azure-mgmt-core's ARM polling).

Imported on first use: azure-mgmt-core is not needed to parse and enqueue an event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies._utils import get_retry_after
from azure.core.polling.base_polling import LocationPolling, LROBasePolling
from azure.mgmt.core.polling.arm_polling import ARMPolling, AzureAsyncOperationPolling, BodyContentPolling

from rotation.azure.answerjson import set_encoding
from rotation.azure.links import follow
from rotation.azure.request import Request
from rotation.model.errors import StillRunning


class WaitFirstARMPolling(ARMPolling):
    """ARM polling that waits the write's `Retry-After` (or the interval) before the first poll,
    and follows a status link (`Azure-AsyncOperation`, `Location`) only to the ARM endpoint.

    azure-core polls once straight after the initial answer; a service that said "ask again in
    1 s" then costs a read that can only say "still running". Waiting first is what the header
    asks for, and it saves one read per long-running write (at ARM's read limit, that is time).
    Each wait goes through the transport's `sleep`, which caps it and keeps it inside the budget
    (budgeted.Budgeted, over either transport).
    """

    # LROBasePolling routes every attribute read through a Python __getattribute__ that only
    # AsyncARMPolling needs (an MRO workaround); this class is synchronous: the plain lookup.
    __getattribute__ = object.__getattribute__

    def __init__(
        self,
        timeout: float,
        *,
        origin: str | None = None,
        until: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(timeout, **kwargs)
        self._origin = origin  # the ARM endpoint's host[:port]; None: the client's own check only
        # A `time.monotonic()` instant the polling gives up at (StillRunning) rather than wait past.
        self._until = until
        self._parsed: tuple[Any, Any] | None = None  # (answer, resource): resource() decodes once

    def resource(self) -> Any:
        """The resource the last answer shows, decoded once however often it is asked for (the
        written check, then the caller)."""
        answer = self._pipeline_response
        if self._parsed is None or self._parsed[0] is not answer:
            self._parsed = (answer, super().resource())
        return self._parsed[1]

    def run(self) -> None:
        if not self.finished():
            delay = get_retry_after(self._pipeline_response)
            self._sleep(delay if delay else self._timeout)
        super().run()

    def _sleep(self, delay: float) -> None:
        if self._until is not None and time.monotonic() + delay > self._until:
            raise StillRunning("the long-running write had not ended within the wait allowed for it")
        super()._sleep(delay)

    def request_status(self, status_link: str) -> Any:
        self._check_link(status_link)
        if self._path_format_arguments or not isinstance(self._initial_response.http_request, Request):
            return super().request_status(status_link)  # a typed SDK's write: azure-core's request
        # What azure-core's does for a write Arm sent, with the request that costs less to make:
        # every poll carries the write's client request id.
        if "request_id" not in self._operation_config:
            self._operation_config["request_id"] = self._get_request_id()
        response = self._client.send_request(
            Request.bare("GET", status_link), _return_pipeline_response=True, **self._operation_config
        )
        set_encoding(response.http_response)  # the operations read it through text()
        return response

    def _check_link(self, link: str) -> None:
        # A relative link is joined to the client's ARM base URL; an absolute one must name it.
        if self._origin is not None and ("://" in link or link.startswith("//")):
            follow(link, self._origin, "a long-running operation's status link")


class ResourceFirstARMPolling(WaitFirstARMPolling):
    """One read per long-running write: after the write's `Retry-After`, GET the written
    resource until its `properties.provisioningState` is terminal, instead of the status link
    and then the resource (ARM RPC: for a PUT or PATCH the resource's provisioningState is
    authoritative; the resource read once it is terminal is the final state).

    `shows_write(resource)` says whether that resource holds what was written. When it does
    not, or the state is Failed or Canceled, the write's status link (if it named one) is
    followed as WaitFirstARMPolling does: it carries the error ARM reports, and it covers a
    provider that shows a terminal state before the write lands (extra reads only then).
    """

    def __init__(
        self, timeout: float, *, shows_write: Callable[[Any], bool], origin: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(timeout, origin=origin, lro_algorithms=[BodyContentPolling()], **kwargs)
        self._shows_write = shows_write

    def run(self) -> None:
        # A status link to another host is refused even though it may never be read: an answer
        # naming one is not trusted for anything else either.
        headers = self._initial_response.http_response.headers
        for name in ("azure-asyncoperation", "location"):
            if headers.get(name):
                self._check_link(headers[name])
        try:
            super().run()
            if self._shows_write(self.resource()):
                return
        except HttpResponseError:
            if not self._by_status_link():
                raise
        else:
            if not self._by_status_link():
                return  # nothing else to ask: the caller verifies what the resource shows
        LROBasePolling.run(self)  # status polls at once (the wait is spent), then the final GET

    def _by_status_link(self) -> bool:
        """Switch to the status link the write named (Azure-AsyncOperation, else Location)."""
        algorithms: tuple[Any, ...] = (AzureAsyncOperationPolling(), LocationPolling())
        for operation in algorithms:
            if operation.can_poll(self._initial_response):
                self._operation = operation
                self._status = operation.set_initial_status(self._initial_response)
                return True
        return False

    def _extract_delay(self) -> float:
        # A resource's GET names no Retry-After: between reads, keep the interval the write asked.
        asked = get_retry_after(self._pipeline_response) or get_retry_after(self._initial_response)
        return float(asked) if asked else float(self._timeout)
