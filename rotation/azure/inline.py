"""Several SansIO policies run as one pipeline node.

azure-core wraps every SansIO policy in a runner node of its own: each call then passes through
a `send` frame and three `_await_result` calls per policy (an awaitable check on every hook),
about a tenth of an ARM call's CPU for the seven policies it needs. `InlinePolicies` runs the
hooks of a list of policies in one node, in the order and with the error handling the runners
would give them: `on_request` first to last, `on_response` last to first, and when a hook or
the rest of the pipeline raises, `on_exception` of every policy whose `on_request` ran and whose
`on_response` did not, innermost first.
"""

from __future__ import annotations

from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy, SansIOHTTPPolicy


class InlinePolicies(HTTPPolicy[Any, Any]):
    """Synchronous SansIO policies (their hooks return None), run in one node."""

    def __init__(self, *policies: SansIOHTTPPolicy[Any, Any]) -> None:
        super().__init__()
        self.policies = policies

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        policies = self.policies
        started = 0  # policies whose on_request ran: they are owed an on_response or on_exception
        try:
            for policy in policies:
                policy.on_request(request)
                started += 1
        except Exception:
            _failed(policies[:started], request)
            raise
        try:
            response = self.next.send(request)
        except Exception:
            _failed(policies, request)
            raise
        for answered in range(len(policies), 0, -1):
            try:
                policies[answered - 1].on_response(request, response)
            except Exception:
                _failed(policies[: answered - 1], request)
                raise
        return response


def _failed(policies: tuple[SansIOHTTPPolicy[Any, Any], ...], request: PipelineRequest[Any]) -> None:
    # As nested runners: an on_exception that raises hands its error to the policies outside it.
    error: Exception | None = None
    for policy in reversed(policies):
        try:
            policy.on_exception(request)
        except Exception as exc:  # noqa: BLE001 - raised below, as the next runner out would
            error = exc
    if error is not None:
        raise error
