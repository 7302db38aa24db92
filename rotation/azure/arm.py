"""Generic ARM calls by resource id with an explicit api-version.

For consumer kinds whose typed management SDK would cost more (install size, import time) than
it gives: a GET, a paged list by subscription, and long-running PATCH/PUT, through azure-core's
pipeline with ARM's challenge authentication, ARM error bodies (`HttpResponseError.error.code`)
and ARM's long-running-operation polling (`Azure-AsyncOperation`, `Location`, `Retry-After`).
Like the typed clients, it has no retry policy of its own: retry.py is the one retry layer.
Bodies are plain dicts in the wire format, so what a kind writes is exactly what it sends.
Links from answers (`nextLink`, LRO status URLs) are followed only to the ARM endpoint (links.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any, cast
from urllib.parse import quote

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    map_error,
)
from azure.core.paging import ItemPaged
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import (
    DistributedTracingPolicy,
    HttpLoggingPolicy,
    SansIOHTTPPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.polling import LROPoller
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

from rotation.azure.answerjson import answer_json, set_encoding
from rotation.azure.inline import InlinePolicies
from rotation.azure.links import HostGuardPolicy, PageGuard, follow, origin
from rotation.azure.polling import ResourceFirstARMPolling, WaitFirstARMPolling
from rotation.azure.request import Request
from rotation.azure.requestid import RandomRequestIdPolicy

_ERRORS: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
}
USER_AGENT = "cmk-rotation"


def user_agent() -> str:
    """Ours, and what AZURE_HTTP_USER_AGENT adds, as azure-core's UserAgentPolicy would write it."""
    extra = os.environ.get("AZURE_HTTP_USER_AGENT")
    return USER_AGENT if extra is None else f"{USER_AGENT} {extra}"


class Arm:
    """One ARM endpoint; safe to share between threads (the pipeline is stateless per call)."""

    def __init__(
        self,
        credential: TokenCredential,
        base_url: str,
        scopes: list[str],
        transport: HttpTransport,
        polling_interval: float,
        pacing: SansIOHTTPPolicy[Any, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.origin = origin(self.base_url)
        self.polling_interval = polling_interval
        # What each call needs and no more (each policy costs every call): no HeadersPolicy (no
        # default headers, no per-call `headers=`: a write's If-Match is on its HttpRequest), no
        # ContentDecodePolicy (answers are decoded once, by _json), no retries (retry.py).
        # The SansIO ones run inline (inline.py): one pipeline node each side of the token.
        policies = [
            InlinePolicies(
                HostGuardPolicy(self.origin),  # before the token is added: nothing leaves for another host
                RandomRequestIdPolicy(),  # not azure-core's: its time-based ids cost CPU
                # AZURE_HTTP_USER_AGENT read once, here, not on every call
                UserAgentPolicy(user_agent(), user_agent_use_env=False),
            ),
            ARMChallengeAuthenticationPolicy(credential, *scopes),
            # after the token: a call the challenge repeats is paced, traced and logged again
            InlinePolicies(
                *([pacing] if pacing is not None else []), DistributedTracingPolicy(), HttpLoggingPolicy()
            ),
        ]
        self._client: ARMPipelineClient[Any, Any] = ARMPipelineClient(
            base_url=self.base_url, policies=policies, transport=transport
        )

    # -- reads ------------------------------------------------------------------------------------
    def get(self, resource_id: str, api_version: str) -> dict[str, Any] | None:
        """The resource as ARM shows it, or None when it does not exist."""
        try:
            return self._json(self._send("GET", resource_id, api_version))
        except ResourceNotFoundError:
            return None

    def get_tagged(self, resource_id: str, api_version: str) -> tuple[dict[str, Any] | None, str | None]:
        """The resource and its entity tag (the `ETag` header, else the body's `etag`/`eTag`), for a
        write guarded by `If-Match`; (None, None) when it does not exist."""
        try:
            response = self._send("GET", resource_id, api_version)
        except ResourceNotFoundError:
            return None, None
        body = self._json(response)
        tag = (
            response.http_response.headers.get("ETag") or (body or {}).get("etag") or (body or {}).get("eTag")
        )
        return body, str(tag) if tag else None

    def list_by_subscription(
        self, subscription: str, resource_type: str, api_version: str
    ) -> Iterator[dict[str, Any]]:
        """Every resource of `resource_type` ("Microsoft.Storage/storageAccounts") in the
        subscription, following `nextLink` lazily."""
        first = f"/subscriptions/{quote(subscription)}/providers/{resource_type}"
        guard = PageGuard(self.origin, f"the {resource_type} list")

        def get_next(link: str | None) -> PipelineResponse[Any, Any]:
            if link is None:
                return self._send("GET", first, api_version)
            return self._send("GET", guard.next(link), None)

        def extract(response: PipelineResponse[Any, Any]) -> tuple[str | None, Iterator[dict[str, Any]]]:
            page = self._json(response) or {}
            return page.get("nextLink") or None, iter(page.get("value") or [])

        return iter(ItemPaged(get_next, extract))

    def post(
        self, path: str, api_version: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, str]]:
        """A POST that reads (Resource Graph's query): the answer and its headers."""
        response = self._send("POST", path, api_version, body)
        return self._json(response), dict(response.http_response.headers)

    # -- writes -----------------------------------------------------------------------------------
    def patch(self, resource_id: str, api_version: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """A synchronous PATCH: the resource as its answer shows it (no poller, no polls)."""
        return self._json(self._send("PATCH", resource_id, api_version, body))

    def write(
        self,
        method: str,
        resource_id: str,
        api_version: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        shows_write: Callable[[Any], bool] | None = None,
        wait_at_most: float | None = None,
    ) -> dict[str, Any] | None:
        """A PATCH or PUT followed to its end in the calling thread: ARM polling from the write's
        Retry-After, then the resource as the final GET shows it (None if it answers nothing).
        What `begin_*(...).result()` does, without the poller's own thread: the caller waits anyway.
        `headers`: e.g. `If-Match` for a PUT that must not overwrite a change made since the read.
        With `shows_write`, the resource itself is polled (one read per write, polling.py).
        `wait_at_most` seconds: the polling stops instead of waiting past them, and StillRunning
        is raised (the operation goes on in Azure; nothing polls it in the background)."""
        until = None if wait_at_most is None else time.monotonic() + wait_at_most
        polling = self._polling(shows_write, until)
        initial = self._started(self._send(method, resource_id, api_version, body, headers))
        polling.initialize(self._client, initial, self._final)
        polling.run()  # raises HttpResponseError when the operation ends Failed or Canceled
        return cast("dict[str, Any] | None", polling.resource())

    def begin_patch(
        self,
        resource_id: str,
        api_version: str,
        body: dict[str, Any],
        shows_write: Callable[[Any], bool] | None = None,
    ) -> LROPoller[Any]:
        """For a caller that waits a bounded time (`poller.wait(timeout)`); otherwise `write`."""
        initial = self._started(self._send("PATCH", resource_id, api_version, body))
        return LROPoller(self._client, initial, self._final, self._polling(shows_write))

    def begin_put(self, resource_id: str, api_version: str, body: dict[str, Any]) -> LROPoller[Any]:
        initial = self._started(self._send("PUT", resource_id, api_version, body))
        return LROPoller(self._client, initial, self._final, self._polling(None))

    def _polling(
        self, shows_write: Callable[[Any], bool] | None, until: float | None = None
    ) -> WaitFirstARMPolling:
        # ARM's default final state for PATCH and PUT: a GET of the resource once the operation
        # ends; the first poll waits for the write's Retry-After. With `shows_write`, the
        # resource itself is polled instead.
        if shows_write is None:
            return WaitFirstARMPolling(self.polling_interval, origin=self.origin, until=until)
        return ResourceFirstARMPolling(
            self.polling_interval, shows_write=shows_write, origin=self.origin, until=until
        )

    @staticmethod
    def _started(initial: PipelineResponse[Any, Any]) -> PipelineResponse[Any, Any]:
        """A long-running write's first answer, given its encoding: the polling reads its body
        through azure-core's `text()`, which otherwise parses the Content-Type with `email`."""
        set_encoding(initial.http_response)
        return initial

    def _final(self, response: PipelineResponse[Any, Any]) -> dict[str, Any] | None:
        return self._json(response)

    # -- plumbing ---------------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        api_version: str | None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> PipelineResponse[Any, Any]:
        url = follow(path, self.origin) if "://" in path else f"{self.base_url}{path}"
        params = None
        if api_version and "?" not in url:  # what azure-core's params= would write, without its URL parse
            url = f"{url}?api-version={api_version}"
        elif api_version:
            params = {"api-version": api_version}
        if params is None and body is None and headers is None:
            request = Request.bare(method, url)
        else:
            request = Request(method, url, params=params, json=body, headers=headers)
        response = cast(
            "PipelineResponse[Any, Any]",
            self._client.send_request(request, stream=False, _return_pipeline_response=True),
        )
        status = response.http_response.status_code
        if status >= 400:
            map_error(status_code=status, response=response.http_response, error_map=_ERRORS)
            raise HttpResponseError(response=response.http_response, error_format=ARMErrorFormat)
        return response

    @staticmethod
    def _json(response: PipelineResponse[Any, Any]) -> dict[str, Any] | None:
        data = answer_json(response.http_response)
        return data if isinstance(data, dict) else None
