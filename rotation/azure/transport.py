"""An azure-core transport on urllib3 directly: what requests did for a request (environment,
cookies, hooks, hook-able adapters, its own response object) cost more CPU than the exchange.

It sends what the pipeline built, as RequestsTransport sent it (the same default headers, form
bodies encoded the same way), never follows a redirect (azure-core's RedirectPolicy decides
above it: the trust boundary, links.py), never retries (retry.py is the one retry layer), and
raises the errors RequestsTransport raised for the same failures, so retry.py classifies them
the same: ServiceRequestError (the request may not have left: no connection, TLS, proxy),
ServiceRequestTimeoutError (the connection was not made in time), ServiceResponseError (the
connection broke after the request), ServiceResponseTimeoutError (no answer in time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from azure.core.configuration import ConnectionConfiguration
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest as RestHttpRequest
from azure.core.utils import CaseInsensitiveDict
from urllib3 import BaseHTTPResponse, Timeout
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    PoolError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.filepost import encode_multipart_formdata
from urllib3.util import make_headers

from rotation.azure.answers import LegacyResponse, RestResponse, read_whole
from rotation.azure.session import Cert, Connections, Verify

# requests' defaults, sent unless the request has its own (the SDKs set User-Agent).
_DEFAULT_HEADERS = {
    "Accept-Encoding": make_headers(accept_encoding=True)["accept-encoding"],
    "Accept": "*/*",
    "Connection": "keep-alive",
}
_DEFAULT_NAMES = {name.lower(): name for name in _DEFAULT_HEADERS}


class Urllib3Transport(HttpTransport):
    """Sends on shared `connections` (session.Connections), or pools of its own. Takes
    azure-core's connection settings (connection_timeout, read_timeout, connection_verify,
    connection_cert, connection_data_block_size) at construction and per call."""

    def __init__(self, *, connections: Connections | None = None, pool_size: int = 10, **kwargs: Any) -> None:
        self.connection_config = ConnectionConfiguration(**kwargs)
        self._owner = connections is None
        self.connections = connections if connections is not None else Connections(pool_size)

    def open(self) -> None:
        pass  # pools connect on first use

    def close(self) -> None:
        if self._owner:
            self.connections.close()

    def __enter__(self) -> Urllib3Transport:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def send(self, request: Any, *, stream: bool = False, **kwargs: Any) -> Any:
        connect, read, verify, cert = call_settings(self.connection_config, kwargs)
        url: str = request.url
        scheme, _, rest = url.partition("://")
        authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        try:
            opener, whole = self.connections.route(scheme.lower(), authority, verify, cert)
            body, headers = outgoing(request)
            internal = opener.urlopen(
                request.method,
                url if whole else _target(url, len(scheme) + 3 + len(authority)),
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=True,
                timeout=Timeout(connect=connect, read=read),
                enforce_content_length=True,
            )
        except HTTPError as exc:
            raise _sending_error(exc) from exc
        return self._answer(request, internal, stream)

    def _answer(self, request: Any, internal: BaseHTTPResponse, stream: bool) -> Any:
        block = self.connection_config.data_block_size
        if isinstance(request, RestHttpRequest):
            rest = RestResponse(request, internal, block)
            if not stream:
                rest.keep(read_whole(internal, request))
            return rest
        legacy = LegacyResponse(request, internal, block)
        if not stream:
            legacy.keep(read_whole(internal, request))
        return legacy


def call_settings(
    config: ConnectionConfiguration, kwargs: dict[str, Any]
) -> tuple[float, float, Verify, Cert]:
    """A call's (connect timeout, read timeout, verify, cert), taken out of `kwargs`: the call's
    own, else the transport's. Per-request proxies are refused: the environment names them."""
    connect = kwargs.pop("connection_timeout", None) or config.timeout
    read = kwargs.pop("read_timeout", None) or config.read_timeout
    verify = kwargs.pop("connection_verify", config.verify)
    cert = kwargs.pop("connection_cert", config.cert)
    if kwargs.get("proxies"):
        raise ValueError("per-request proxies are not supported: set HTTPS_PROXY and NO_PROXY")
    return connect, read, verify, cert


def _target(url: str, path_starts: int) -> str:
    """What follows the authority: the path (at least "/") and the query, no fragment."""
    target = url[path_starts:].partition("#")[0]
    return target if target.startswith("/") else "/" + target


def outgoing(request: Any) -> tuple[Any, Mapping[str, str]]:
    """The body to send and the headers with it: requests' defaults added, a form encoded."""
    headers, present = _given(request.headers)
    for lower, name in _DEFAULT_NAMES.items():
        if lower not in present:
            headers[name] = _DEFAULT_HEADERS[name]
    data, files = request.data, request.files
    if files:  # multipart/form-data
        fields = [*(data or {}).items(), *files.items()] if isinstance(data, dict) else list(files.items())
        body, content_type = encode_multipart_formdata(fields)
        headers["Content-Type"] = content_type
        return body, headers
    if isinstance(data, dict):  # a form, as requests encoded it
        if "content-type" not in present:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return urlencode(list(data.items()), doseq=True), headers
    return data, headers


def _given(headers: Mapping[str, str]) -> tuple[dict[str, str], set[str]]:
    """A request's headers as a dict and their names in lower case, in one pass (azure-core's
    CaseInsensitiveDict holds the lower-case names already: no `lower()` a name)."""
    if isinstance(headers, CaseInsensitiveDict):
        copied: dict[str, str] = {}
        present: set[str] = set()
        for name, (lower, value) in zip(headers, headers.lowerkey_items(), strict=True):
            copied[name] = value
            present.add(lower)
        return copied, present
    return dict(headers), {name.lower() for name in headers}


def _sending_error(exc: HTTPError) -> Exception:
    """RequestsTransport's error for what urllib3 raised while connecting, sending, or waiting
    for the answer's head."""
    if isinstance(exc, ReadTimeoutError):
        return ServiceResponseTimeoutError(exc, error=exc)
    if isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError):
        return ServiceRequestTimeoutError(exc, error=exc)
    if isinstance(exc, ProtocolError):  # the connection broke once the request was on its way
        return ServiceResponseError(exc, error=exc)
    if isinstance(exc, NewConnectionError | SSLError | ProxyError | PoolError):
        return ServiceRequestError(exc, error=exc)
    return ServiceResponseError(exc, error=exc)
