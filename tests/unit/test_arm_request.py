"""The ARM client's requests (rotation/azure/request.py) skip azure-core's back-compat attribute
machinery and stay azure-core requests: the same body, headers and legacy names, multipart/mixed
still prepared; an LRO's status poll is one too and carries the write's client request id."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.rest import HttpRequest, _http_response_impl

from bench.arm_policies import API, ARM, RESOURCE, RID, STATUS, Canned, Token
from rotation.azure.answers import RestResponse
from rotation.azure.arm import Arm
from rotation.azure.curlanswer import CurlAnswer, Headers
from rotation.azure.request import Request
from rotation.azure.requestid import HEADER


class Recorded(Canned):
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.sent.append(request)
        return super().send(request, **kwargs)


def test_a_request_holds_what_azure_cores_would() -> None:
    body = {"properties": {"a": 1}}
    ours = Request("PUT", f"{ARM}{RID}", json=body, headers={"If-Match": '"1"'})
    theirs = HttpRequest("PUT", f"{ARM}{RID}", json=body, headers={"If-Match": '"1"'})
    assert (ours.method, ours.url, ours.content, dict(ours.headers)) == (
        theirs.method,
        theirs.url,
        theirs.content,
        dict(theirs.headers),
    )
    assert (ours.data, ours.files, ours.multipart_mixed_info) == (theirs.data, theirs.files, None)
    ours.data = b"x"  # a legacy name still lands on the private one
    assert ours._data == b"x" and ours.data == b"x"


def test_a_bare_request_is_the_one_azure_cores_init_makes() -> None:
    bare, made = Request.bare("GET", f"{ARM}{RID}"), Request("GET", f"{ARM}{RID}")
    assert vars(bare).keys() == vars(made).keys()
    assert {name: value for name, value in vars(bare).items() if name != "headers"} == {
        name: value for name, value in vars(made).items() if name != "headers"
    }
    assert type(bare.headers) is type(made.headers) and dict(bare.headers) == dict(made.headers) == {}
    bare.headers["Authorization"] = "Bearer x"  # its own headers, none shared between requests
    assert "authorization" not in Request.bare("GET", f"{ARM}{RID}").headers
    assert (bare.content, bare.data, bare.files, bare.multipart_mixed_info) == (None, None, None, None)


def test_a_multipart_request_is_still_prepared() -> None:
    parts = [HttpRequest("DELETE", f"{ARM}/a"), HttpRequest("DELETE", f"{ARM}/b")]
    ours, theirs = Request("POST", f"{ARM}/batch"), HttpRequest("POST", f"{ARM}/batch")
    for request in (ours, theirs):
        request.set_multipart_mixed(*parts, boundary="batch_1")
    assert ours.multipart_mixed_info is not None
    assert ours.prepare_multipart_body() == theirs.prepare_multipart_body() == 2
    assert ours.headers["Content-Type"] == theirs.headers["Content-Type"]


def test_an_lro_is_polled_with_the_writes_request_id_in_arms_own_requests() -> None:
    transport = Recorded()
    arm = Arm(Token(), ARM, [f"{ARM}/.default"], transport, 0.0)
    arm.write("PATCH", RID, API, {"tags": {}})
    write, poll, final = transport.sent
    assert (write.method, poll.url, final.method) == ("PATCH", STATUS, "GET")
    assert all(isinstance(request, Request) for request in transport.sent)
    assert poll.headers[HEADER] == final.headers[HEADER] == write.headers[HEADER]


class Written(Recorded):
    """A write answered 200 with the resource, its provisioningState terminal already."""

    def send(self, request: Any, **kwargs: Any) -> Any:
        if request.method != "PATCH":
            return super().send(request, **kwargs)
        self.sent.append(request)
        content_type = ("Content-Type", "application/json; charset=utf-8")
        answer = CurlAnswer(200, "OK", Headers({"content-type": content_type}), RESOURCE)
        return RestResponse.whole(request, answer, 4096)


def test_a_writes_first_answer_is_read_without_azure_cores_charset_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The polling reads the write's answer through text(); its encoding is given beforehand,
    as a status poll's is (azure-core would parse the Content-Type with `email`)."""
    parsed: list[Any] = []
    real = _http_response_impl.get_charset_encoding

    def counted(response: Any) -> Any:
        parsed.append(response)
        return real(response)

    monkeypatch.setattr(_http_response_impl, "get_charset_encoding", counted)
    transport = Written()
    arm = Arm(Token(), ARM, [f"{ARM}/.default"], transport, 0.0)
    assert (arm.write("PATCH", RID, API, {"tags": {}}) or {}).get("name") == "reg1"
    assert transport.sent[0].method == "PATCH" and parsed == []
