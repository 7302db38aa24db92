"""Request/response values and a small method+regex router shared by every emulated service."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Request:
    method: str
    host: str  # lower-case, without port
    path: str  # percent-decoded path, no query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    scheme: str = "https"
    raw_target: str = ""
    principal: str | None = None  # the caller, set by authentication
    lro_result: str | None = None  # an injected long-running-operation outcome
    context: dict[str, Any] = field(default_factory=dict)  # per-service scratch (e.g. the vault)

    @classmethod
    def parse(cls, method: str, target: str, host: str, headers: dict[str, str], body: bytes, scheme: str):
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return cls(
            method=method.upper(),
            host=host.split(":", 1)[0].lower(),
            path=unquote(parts.path) or "/",
            query=query,
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
            scheme=scheme,
            raw_target=target,
        )

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)

    def query_ci(self, name: str) -> str | None:
        """Query parameter by case-insensitive name (ARM is lenient about `$skipToken` casing)."""
        for key, value in self.query.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering (fault injection)
    chunks: Iterable[bytes] | None = None  # a body sent as it is made, chunked, with no length
    drip_s: float = 0.0  # send the body one byte at a time, this long apart (fault injection)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        merged = {"Content-Type": "application/json; charset=utf-8"}
        merged.update(headers or {})
        return cls(status, json.dumps(payload, separators=(",", ":")).encode(), merged)

    @classmethod
    def empty(cls, status: int, headers: dict[str, str] | None = None) -> Response:
        return cls(status, b"", dict(headers or {}))


Handler = Callable[..., Response]


class Router:
    """Routes by method and a full-match regex on the path; named groups become kwargs."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), re.compile(pattern, re.IGNORECASE), handler))

    def dispatch(self, request: Request) -> Response | None:
        """The matching handler's response; 405 if only the method differs; None if no path matched."""
        path_matched = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if not match:
                continue
            path_matched = True
            if method == request.method:
                return handler(request, **match.groupdict())
        if path_matched:
            return Response.json(
                405, {"error": {"code": "MethodNotAllowed", "message": "Method not allowed"}}
            )
        return None
