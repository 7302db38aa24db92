"""Call an HTTP function entry point as the Functions host does, with a real func.HttpRequest."""

from __future__ import annotations

import json
from typing import Any

from devstack.functions_host import http_request


def call(function: Any, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any, Any]:
    """(status, parsed JSON body or None when empty, headers). A `body` of bytes goes as is (for
    malformed input); anything else is sent as JSON. `kwargs` go to http_request (query, headers,
    route_params)."""
    raw = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    response = function(http_request(method, path, body=raw, **kwargs))
    text = response.get_body().decode()
    return response.status_code, (json.loads(text) if text else None), response.headers
