"""An ARM answer's JSON is decoded once, by rotation.azure.answerjson, with azure-core's rules
(the ARM pipeline has no ContentDecodePolicy decoding it a second time)."""

from __future__ import annotations

import io
import json

import pytest
import requests
from azure.core.exceptions import DecodeError, HttpResponseError
from azure.core.rest import HttpRequest
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from requests.structures import CaseInsensitiveDict

from rotation.azure.answerjson import answer_json, set_encoding

BODY = {"name": "reg1", "tags": {"owner": "Zoë"}}


def answer(body: bytes, content_type: str | None) -> RestRequestsTransportResponse:
    """azure-core's response over a requests response that has its body, as a read answer is."""
    raw = requests.Response()
    raw.status_code, raw.reason, raw.url = 200, "OK", "https://management.azure.com/x"
    raw.headers = CaseInsensitiveDict({"Content-Type": content_type} if content_type else {})
    raw._content, raw.raw = body, io.BytesIO(b"")
    raw._content_consumed = True  # type: ignore[attr-defined]  # requests sets it on reading
    response = RestRequestsTransportResponse(request=HttpRequest("GET", raw.url), internal_response=raw)
    response.read()
    return response


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/json",
        None,
    ],
)
def test_utf8_answers_decode_with_or_without_a_bom(content_type: str | None) -> None:
    text = json.dumps(BODY, ensure_ascii=False).encode()
    assert answer_json(answer(text, content_type)) == BODY
    assert answer_json(answer(b"\xef\xbb\xbf" + text, content_type)) == BODY


def test_another_charset_is_decoded_as_azure_core_does() -> None:
    text = json.dumps(BODY, ensure_ascii=False).encode("latin-1")
    assert answer_json(answer(text, "application/json; charset=iso-8859-1")) == BODY


def test_no_charset_replaces_bytes_that_are_not_utf8_as_azure_core_does() -> None:
    assert answer_json(answer(b'{"name": "reg\xff"}', "application/json")) == {"name": "reg\ufffd"}


def test_an_empty_answer_is_none() -> None:
    assert answer_json(answer(b"", "application/json")) is None


def test_an_answer_that_is_not_json_is_an_http_response_error_with_the_answer() -> None:
    with pytest.raises(DecodeError) as raised:
        answer_json(answer(b"<html>gateway</html>", "application/json; charset=utf-8"))
    assert isinstance(raised.value, HttpResponseError)
    assert raised.value.status_code == 200
    assert "JSON is invalid" in str(raised.value)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("\ufeff{}".encode(), "application/json; charset=utf-8"),
        (b'{"a": "\xff"}', "application/json"),
        ("{}".encode("utf-16"), "application/json; charset=utf-16"),
        (b"{}", None),
    ],
)
def test_an_answers_encoding_set_ahead_gives_azure_cores_text(body: bytes, content_type: str | None) -> None:
    # LRO polling reads status answers with azure-core's text(); set_encoding spares its parse
    ours, theirs = answer(body, content_type), answer(body, content_type)
    set_encoding(ours)
    assert ours.text() == theirs.text()
