"""The transports' contract (rotation/azure/transport.py on urllib3, rotation/azure/curl.py on
libcurl: every case runs on both): both of azure-core's request and response interfaces, requests'
default headers and form encoding, connection reuse, decoding, no redirects followed, per-call
timeouts, and the errors RequestsTransport raised for the same failures; with the budget on top
(budgeted.py): the answer limit on a real socket."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpRequest as LegacyRequest
from azure.core.rest import HttpRequest

from rotation.azure.budgeted import Budgeted, BudgetedTransport
from rotation.azure.curl import BudgetedCurlTransport, CurlTransport
from rotation.azure.transport import Urllib3Transport
from rotation.model.errors import ResponseTooLarge
from tests.unit.http_server import Seen, serve

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass(frozen=True)
class Kind:
    plain: Callable[..., Any]  # the transport
    budgeted: Callable[..., Budgeted]  # with the budget on top
    streams: bool  # a streamed answer is read as the caller reads it (libcurl's is read whole first)


URLLIB3 = Kind(Urllib3Transport, BudgetedTransport, streams=True)
CURL = Kind(CurlTransport, BudgetedCurlTransport, streams=False)


@pytest.fixture(params=[URLLIB3, CURL], ids=["urllib3", "curl"])
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param


@pytest.fixture
def local() -> Iterator[tuple[str, Seen]]:
    with serve() as (port, seen):
        yield f"http://127.0.0.1:{port}", seen


def test_a_rest_request_gets_a_read_rest_response(local: tuple[str, Seen], kind: Kind) -> None:
    base, _ = local
    response = kind.plain().send(HttpRequest("GET", f"{base}/plain?a=1"))
    assert (response.status_code, response.reason, response.text()) == (200, "OK", "ok")
    assert response.headers["content-type"] == response.headers["Content-Type"] == response.content_type
    assert response.is_closed and response.content == b"ok" and response.request.url.endswith("a=1")


def test_a_legacy_request_gets_a_legacy_response(local: tuple[str, Seen], kind: Kind) -> None:
    base, _ = local
    request = LegacyRequest("PUT", f"{base}/echo")
    request.set_json_body({"k": "v"})
    response = kind.plain().send(request)
    echoed = json.loads(response.body())
    assert response.status_code == 200 and response.text() == response.body().decode()
    assert (echoed["method"], echoed["body"]) == ("PUT", '{"k": "v"}')


def test_requests_default_headers_and_form_encoding(local: tuple[str, Seen], kind: Kind) -> None:
    base, _ = local
    request = LegacyRequest("POST", f"{base}/echo", headers={"accept": "application/json"})
    request.headers["Content-Type"] = "application/x-www-form-urlencoded"
    request.set_formdata_body({"resource": "https://vault.azure.net", "grant_type": "x y"})
    echoed = json.loads(kind.plain().send(request).body())
    headers = {name.lower(): value for name, value in echoed["headers"].items()}
    assert echoed["body"] == "resource=https%3A%2F%2Fvault.azure.net&grant_type=x+y"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["accept"] == "application/json"  # the request's own, not the default's
    assert "gzip" in headers["accept-encoding"] and headers["connection"] == "keep-alive"


def test_connections_are_reused_once_an_answer_is_read(local: tuple[str, Seen], kind: Kind) -> None:
    base, seen = local
    transport = kind.plain()
    for _ in range(10):
        assert transport.send(HttpRequest("GET", f"{base}/plain")).text() == "ok"
    streamed = transport.send(HttpRequest("GET", f"{base}/big"), stream=True)
    assert len(b"".join(streamed.iter_bytes())) == 300_000  # read to its end: back to the pool
    assert transport.send(HttpRequest("GET", f"{base}/plain")).text() == "ok"
    assert seen.connections == 1


def test_a_stream_left_half_read_is_closed_not_pooled(local: tuple[str, Seen], kind: Kind) -> None:
    base, seen = local
    transport = kind.plain(connection_data_block_size=1024)
    streamed = transport.send(HttpRequest("GET", f"{base}/big"), stream=True)
    assert len(next(streamed.iter_bytes())) == 1024
    streamed.close()
    assert transport.send(HttpRequest("GET", f"{base}/plain")).text() == "ok"
    assert seen.connections == (2 if kind.streams else 1)  # libcurl's was read whole: nothing half read


def test_a_stream_its_caller_stops_iterating_is_closed_at_once(local: tuple[str, Seen], kind: Kind) -> None:
    base, _ = local
    transport = kind.plain(connection_data_block_size=1024)
    streamed = transport.send(HttpRequest("GET", f"{base}/big"), stream=True)
    chunks = streamed.iter_bytes()
    assert len(next(chunks)) == 1024
    chunks.close()  # the caller stops half way, without closing the response itself
    assert streamed.internal_response.closed


def test_a_rest_response_streams_through_its_deprecated_stream_download_too(
    local: tuple[str, Seen], kind: Kind
) -> None:
    """azure-storage-blob's downloads read a rest response through `stream_download`."""
    base, seen = local
    transport = kind.plain()
    downloaded = transport.send(HttpRequest("GET", f"{base}/big"), stream=True).stream_download(None)
    downloaded.properties = "set by azure-storage-blob"  # as its downloader does
    assert len(downloaded) == downloaded.content_length == 300_000 and downloaded.response.status_code == 200
    assert len(b"".join(downloaded)) == 300_000
    assert transport.send(HttpRequest("GET", f"{base}/plain")).text() == "ok"
    assert seen.connections == 1


def test_a_compressed_answer_is_decoded_and_limited_by_what_it_expands_to(
    local: tuple[str, Seen], kind: Kind
) -> None:
    base, _ = local
    assert kind.plain().send(HttpRequest("GET", f"{base}/gzip")).content == b"z" * 100_000
    legacy = kind.plain().send(LegacyRequest("GET", f"{base}/gzip"), stream=True)
    assert b"".join(legacy.stream_download(None)) == b"z" * 100_000
    with pytest.raises(ResponseTooLarge):  # 100 kB once decoded, a few hundred bytes on the wire
        kind.budgeted(answer_limit=64 * 1024).send(HttpRequest("GET", f"{base}/gzip"))


def test_the_answer_limit_holds_on_a_real_socket(local: tuple[str, Seen], kind: Kind) -> None:
    base, seen = local
    transport = kind.budgeted(answer_limit=64 * 1024)
    with pytest.raises(ResponseTooLarge, match="declares 300000 bytes"):
        transport.send(HttpRequest("GET", f"{base}/big"))
    assert transport.send(HttpRequest("GET", f"{base}/plain")).text() == "ok"
    assert seen.connections == 2  # the refused answer's connection was closed, not pooled


def test_a_redirect_is_handed_up_never_followed(local: tuple[str, Seen], kind: Kind) -> None:
    base, seen = local
    response = kind.budgeted(answer_limit=1024).send(HttpRequest("GET", f"{base}/redirect"))
    assert response.status_code == 302 and response.headers["Location"] == "https://evil.test/steal"
    assert seen.paths == ["/redirect"]


def test_an_endpoint_that_never_answers_ends_at_the_read_timeout(local: tuple[str, Seen], kind: Kind) -> None:
    base, _ = local
    started = time.monotonic()
    with pytest.raises(ServiceResponseTimeoutError):
        kind.plain(read_timeout=0.3).send(HttpRequest("GET", f"{base}/silent"))
    with pytest.raises(ServiceResponseTimeoutError):  # a per-call timeout wins over the transport's
        kind.plain(read_timeout=60).send(HttpRequest("GET", f"{base}/silent"), read_timeout=0.3)
    assert time.monotonic() - started < 10


def closed_port() -> int:
    with socket.socket() as probe:  # bound, never listening: a connection is refused at once
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_errors_are_those_requests_transport_raised(local: tuple[str, Seen], kind: Kind) -> None:
    base, _ = local
    with pytest.raises(ServiceRequestError) as refused:  # nothing was sent: safe to retry anything
        kind.plain().send(HttpRequest("GET", f"http://127.0.0.1:{closed_port()}/"))
    assert not isinstance(refused.value, ServiceResponseError)
    with pytest.raises(ServiceResponseError):  # sent, and the connection broke: maybe applied
        kind.plain().send(HttpRequest("POST", f"{base}/cut"))


@pytest.mark.parametrize("request_type", [HttpRequest, LegacyRequest])
def test_an_answer_cut_short_is_a_response_error_read_whole_or_streamed(
    local: tuple[str, Seen], kind: Kind, request_type: type
) -> None:
    base, _ = local
    with pytest.raises(ServiceResponseError, match=r"GET 127\.0\.0\.1") as raised:
        kind.plain().send(request_type("GET", f"{base}/short?sig=secret"))
    assert "secret" not in str(raised.value)  # named by its host, never its query (a SAS)
    with pytest.raises(ServiceResponseError):  # libcurl's: at once, as its answers are read whole
        streamed = kind.plain().send(request_type("GET", f"{base}/short"), stream=True)
        b"".join(streamed.iter_bytes() if request_type is HttpRequest else streamed.stream_download(None))


def test_per_request_proxies_are_refused_clearly(local: tuple[str, Seen], kind: Kind) -> None:
    base, _ = local
    with pytest.raises(ValueError, match="HTTPS_PROXY"):
        kind.plain().send(HttpRequest("GET", base), proxies={"http": "http://10.0.0.1:3128"})


@pytest.mark.parametrize("header", [("If-Match", '"1"\r\nX-Injected: yes'), ("X-Bad\nName", "v")])
def test_a_header_that_would_split_the_request_is_refused_unsent(
    local: tuple[str, Seen], kind: Kind, header: tuple[str, str]
) -> None:
    # If-Match carries an ETag an answer chose: a line break in it must not become a header of
    # its own on a request that carries the bearer token.
    base, seen = local
    name, value = header
    with pytest.raises(ValueError, match="header"):
        kind.plain().send(HttpRequest("PUT", f"{base}/echo", headers={name: value}, json={}))
    assert "/echo" not in seen.paths
