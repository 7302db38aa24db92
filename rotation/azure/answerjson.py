"""An answer's JSON body, decoded once.

azure-core's `HttpResponse.json()` finds the charset by building an `email.message.Message` from
the Content-Type for every answer, and its ContentDecodePolicy decodes every body once more,
whether anyone reads the result or not. ARM answers `application/json; charset=utf-8` (or no
charset): those are decoded here directly, with azure-core's rules (a UTF-8 BOM is dropped; with
no charset, bytes that are not UTF-8 are replaced, not refused); any other charset goes through
azure-core's `text()` as before.
"""

from __future__ import annotations

import json
import re
from typing import Any

from azure.core.exceptions import DecodeError

_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([^\";\s]*)", re.IGNORECASE)


def says_utf8(response: Any) -> bool | None:
    """True when the answer's Content-Type says charset=utf-8, False when it names no charset,
    None when it names another."""
    found = _CHARSET.search(response.headers.get("Content-Type") or "")
    if found is None:
        return False
    return True if found.group(1).lower() == "utf-8" else None


def set_encoding(response: Any) -> None:
    """Give the answer the encoding azure-core's `text()` would find (utf-8, or none) so that it
    skips its `email.message` parse: azure-core's LRO polling reads status answers through it."""
    utf8 = says_utf8(response)
    if utf8 is not None:
        response.encoding = "utf-8" if utf8 else None


def answer_json(response: Any) -> Any:
    """The body as JSON, or None when it is empty (azure.core.rest HttpResponse, read)."""
    content: bytes = response.content
    if not content:
        return None
    utf8 = says_utf8(response)
    if utf8 is False:
        text = content.decode("utf-8-sig", errors="replace")
    elif utf8:
        text = content.decode("utf-8-sig")
    else:
        text = response.text()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:  # as ContentDecodePolicy said it: an HttpResponseError with the answer
        raise DecodeError(message=f"JSON is invalid: {exc}", response=response, error=exc) from exc
