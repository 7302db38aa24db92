"""What the libcurl transport (rotation/azure/curl*.py) adds to the contract both transports keep
(test_transport.py; its proxy rules: test_session_environment.py): the answer's head gathered from the
final answer only, the limit held on a streamed answer too, no `Expect: 100-continue`, and a
bounded pool of handles."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ServiceResponseError
from azure.core.rest import HttpRequest

from rotation.azure.answers import RestResponse
from rotation.azure.curl import BudgetedCurlTransport, CurlTransport
from rotation.azure.curlanswer import CurlAnswer, Gathered
from rotation.azure.curlhandles import Handles
from rotation.model.errors import ResponseTooLarge
from tests.unit.http_server import Seen, serve


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Seen]]:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with serve() as (port, seen):
        yield f"http://127.0.0.1:{port}", seen


def test_only_the_final_answers_head_is_kept_and_repeated_names_are_joined() -> None:
    gathered = Gathered(limit=None)
    for line in (
        b"HTTP/1.1 200 Connection established\r\n",  # a proxy's CONNECT answer
        b"Proxy-Agent: squid\r\n",
        b"\r\n",
        b"HTTP/1.1 100 Continue\r\n",
        b"\r\n",
        b"HTTP/1.1 202 Accepted\r\n",
        b"Azure-AsyncOperation: https://management.azure.com/op\r\n",
        b"Vary: Accept\r\n",
        b"vary: Origin\r\n",
        b"\r\n",
    ):
        gathered.lines.append(line)
    assert gathered.write(b"{}") is None
    answer = gathered.answer()
    assert (answer.status, answer.reason) == (202, "Accepted")
    assert answer.headers["azure-asyncoperation"] == "https://management.azure.com/op"
    assert answer.headers["Vary"] == "Accept, Origin" and "Proxy-Agent" not in answer.headers
    assert answer.read() == b"{}"


def test_the_limit_holds_on_a_streamed_answer_and_its_connection_is_closed(local: tuple[str, Seen]) -> None:
    base, seen = local
    transport = BudgetedCurlTransport(answer_limit=64 * 1024)
    with pytest.raises(ResponseTooLarge, match="declares 300000 bytes"):
        transport.send(HttpRequest("GET", f"{base}/big"), stream=True)
    assert transport.send(HttpRequest("GET", f"{base}/plain"), stream=True).read() == b"ok"
    assert seen.connections == 2


def test_a_large_body_is_sent_without_waiting_for_100_continue(local: tuple[str, Seen]) -> None:
    base, _ = local
    body = json.dumps({"data": "x" * 2_000_000})  # libcurl would ask for 100-continue past 1 MB
    echoed = CurlTransport().send(HttpRequest("PUT", f"{base}/echo", content=body.encode())).json()
    headers = {name.lower() for name in echoed["headers"]}
    assert echoed["body"] == body and "expect" not in headers
    assert "content-type" not in headers  # none given: none sent (libcurl would add a form's)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_write_whose_connection_closes_unanswered_is_not_sent_again(
    local: tuple[str, Seen], method: str
) -> None:
    """libcurl resends a request on a fresh connection when a reused one closes before any answer;
    the server may have applied it (the emulator's dropped `rotate`): a write fails instead."""
    base, seen = local
    transport = CurlTransport()
    assert transport.send(HttpRequest("GET", f"{base}/plain")).text() == "ok"  # a connection to reuse
    with pytest.raises(ServiceResponseError):
        transport.send(HttpRequest(method, f"{base}/cut"))
    assert seen.paths == ["/plain", "/cut"]


def test_a_post_without_a_body_says_its_length_is_zero(local: tuple[str, Seen]) -> None:
    base, _ = local
    echoed = CurlTransport().send(HttpRequest("POST", f"{base}/echo")).json()
    assert echoed["headers"]["Content-Length"] == "0" and echoed["method"] == "POST"


def test_the_pool_keeps_at_most_its_cap_of_idle_handles() -> None:
    handles = Handles(kept=2)
    a, b, c = handles.take(), handles.take(), handles.take()
    assert len({id(a), id(b), id(c)}) == 3  # a burst past the cap still gets handles
    for handle in (a, b, c):
        handles.give(handle)  # a and b kept, c closed: past the cap
    first, second, third = handles.take(), handles.take(), handles.take()
    # LIFO: the last kept handed back is the first lent; the third was made anew
    assert (first, second) == (b, a) and third not in (a, b, c)


def test_a_handle_lent_again_carries_nothing_of_its_previous_request(local: tuple[str, Seen]) -> None:
    """A handle keeps its route's options from one request to the next (curlrequest.prepare);
    a write's method, body and headers never reach the request after it."""
    base, seen = local
    handles = Handles(kept=1)
    transport = CurlTransport(handles=handles)
    sent = [
        transport.send(HttpRequest("PUT", f"{base}/echo", json={"k": "v"}, headers={"If-Match": '"1"'})),
        transport.send(HttpRequest("GET", f"{base}/echo")),
        transport.send(HttpRequest("POST", f"{base}/echo")),
        transport.send(HttpRequest("GET", f"{base}/echo", headers={"X-Only": "here"})),
        transport.send(HttpRequest("GET", f"{base}/echo")),
    ]
    echoed = [response.json() for response in sent]
    assert [each["method"] for each in echoed] == ["PUT", "GET", "POST", "GET", "GET"]
    assert echoed[0]["body"] == '{"k": "v"}' and echoed[0]["headers"]["If-Match"] == '"1"'
    for get in (echoed[1], echoed[4]):
        assert get["body"] == "" and not {"If-Match", "Content-Length", "X-Only"} & set(get["headers"])
    assert seen.connections == 1  # all on the one handle's connection
    idle = handles.take()  # and it holds no answer while idle
    assert idle.gathered.lines == [] and idle.gathered.parts == []
    assert idle.gathered.head()[0] == 0 and not idle.gathered.head()[2]  # no head kept either


def test_a_response_read_whole_is_the_one_init_and_keep_make(local: tuple[str, Seen]) -> None:
    """RestResponse.whole sets azure-core's attributes at once: the same ones, the same values."""
    base, _ = local
    request = HttpRequest("GET", f"{base}/plain")
    quick = CurlTransport().send(request)
    internal = CurlAnswer(quick.status_code, quick.reason, quick.headers, quick.content)
    slow = RestResponse(request, internal, 4096)
    slow.keep(internal.read())
    assert type(quick) is RestResponse and vars(quick).keys() == vars(slow).keys()
    for name, value in vars(slow).items():
        assert name == "_internal_response" or vars(quick)[name] == value, name
    assert quick.is_closed and quick.is_stream_consumed and quick.text() == "ok"
