"""Long-running ARM writes polled the way the service asks (azure-mgmt-core's ARM polling).

Imported on first use: azure-mgmt-core is not needed to parse and enqueue an event.
"""

from __future__ import annotations

from typing import Any

from azure.core.pipeline.policies._utils import get_retry_after
from azure.mgmt.core.polling.arm_polling import ARMPolling

from rotation.azure.links import follow


class WaitFirstARMPolling(ARMPolling):
    """ARM polling that waits the write's `Retry-After` (or the interval) before the first poll,
    and follows a status link (`Azure-AsyncOperation`, `Location`) only to the ARM endpoint.

    azure-core polls once straight after the initial answer; a service that said "ask again in
    1 s" then costs a read that can only say "still running". Waiting first is what the header
    asks for, and it saves one read per long-running write (at ARM's read limit, that is time).
    Each wait goes through the transport's `sleep`, which caps it and keeps it inside the budget
    (clients.BudgetedTransport).
    """

    def __init__(self, timeout: float, *, origin: str | None = None, **kwargs: Any) -> None:
        super().__init__(timeout, **kwargs)
        self._origin = origin  # the ARM endpoint's host[:port]; None: the client's own check only

    def run(self) -> None:
        if not self.finished():
            delay = get_retry_after(self._pipeline_response)
            self._sleep(delay if delay else self._timeout)
        super().run()

    def request_status(self, status_link: str) -> Any:
        # A relative link is joined to the client's ARM base URL; an absolute one must name it.
        if self._origin is not None and ("://" in status_link or status_link.startswith("//")):
            follow(status_link, self._origin, "a long-running operation's status link")
        return super().request_status(status_link)
