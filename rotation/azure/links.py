"""Links an answer names (LRO status URLs, `nextLink`s) are followed only to the host the
request went to, over https: a bearer token never leaves the service it was meant for.

`follow` is the check made before following a link; `PageGuard` adds a pager's page limit and
loop check; `HostGuardPolicy` is the defence in depth in every Key Vault and ARM pipeline: a
request to any other origin is refused before it is sent, whatever built it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy

from rotation.model.errors import ForeignLink, PagingRefused

# A Key Vault page holds 25 versions, an ARM page up to 1000 resources: 1000 pages is a key with
# 25,000 versions or a subscription with a million resources of one kind.
MAX_PAGES = 1000


def origin(url: str) -> str:
    """`host[:port]` in lower case, the port only when not 443 ("" when there is none)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a malformed port or bracket: no origin anything matches
        return ""
    host = (parts.hostname or "").lower()
    return host if port in (None, 443) else f"{host}:{port}"


def follow(link: str, expected: str, what: str = "a link") -> str:
    """`link`, when it is https on `expected` (an origin, see `origin`); else ForeignLink."""
    # The common case without a URL parse: the authority ends at the first "/" after "https://".
    if expected and link[: len(expected) + 9].lower() == f"https://{expected}/":
        return link
    found = origin(link)  # "" for a link that does not parse
    if not found or not link.lower().startswith("https://") or found != expected:
        raise ForeignLink(found or link[:100], expected, what)
    return link


class PageGuard:
    """One pager's links: each checked with `follow`, none twice, at most `max_pages` pages."""

    def __init__(self, expected: str, what: str, max_pages: int = MAX_PAGES) -> None:
        self.expected, self.what, self.max_pages = expected, what, max_pages
        self._seen: set[str] = set()

    def next(self, link: str) -> str:
        if not (link.startswith("/") and not link.startswith("//")):  # a path stays on the host
            follow(link, self.expected, f"{self.what}'s nextLink")
        if link in self._seen:
            raise PagingRefused(f"{self.what}'s nextLink repeats a page already read: paging stopped")
        if len(self._seen) + 2 > self.max_pages:  # the first page came without a link
            raise PagingRefused(f"{self.what} has more than {self.max_pages} pages: paging stopped")
        self._seen.add(link)
        return link


class HostGuardPolicy(SansIOHTTPPolicy[Any, Any]):
    """Refuses, before sending, a request to another origin than the client's (`expected`).
    `inner`: a policy sharing the pipeline slot (the SDKs offer one custom slot)."""

    def __init__(self, expected: str, inner: SansIOHTTPPolicy[Any, Any] | None = None) -> None:
        self.expected = expected
        self.inner = inner

    def on_request(self, request: PipelineRequest[Any]) -> None:
        follow(request.http_request.url, self.expected, f"a request ({request.http_request.method})")
        if self.inner is not None:
            self.inner.on_request(request)

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        if self.inner is not None:
            self.inner.on_response(request, response)

    def on_exception(self, request: PipelineRequest[Any]) -> None:
        if self.inner is not None:
            self.inner.on_exception(request)
