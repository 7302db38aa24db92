"""Long-running ARM writes polled the way the service asks (azure-mgmt-core's ARM polling).

Imported on first use: azure-mgmt-core is not needed to parse and enqueue an event.
"""

from __future__ import annotations

from azure.core.pipeline.policies._utils import get_retry_after
from azure.mgmt.core.polling.arm_polling import ARMPolling


class WaitFirstARMPolling(ARMPolling):
    """ARM polling that waits the write's `Retry-After` (or the interval) before the first poll.

    azure-core polls once straight after the initial answer; a service that said "ask again in
    1 s" then costs a read that can only say "still running". Waiting first is what the header
    asks for, and it saves one read per long-running write (at ARM's read limit, that is time).
    """

    def run(self) -> None:
        if not self.finished():
            delay = get_retry_after(self._pipeline_response)
            self._sleep(delay if delay else self._timeout)
        super().run()
