"""An Event Grid custom topic endpoint (``https://<topic>.<region>.eventgrid.azure.net/api/events``)
that records what it receives, so tests can read the product's outcome events."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from .http import Request, Response
from .identity import TokenIssuer

EVENTGRID_SUFFIX = ".eventgrid.azure.net"
AUDIENCE = "https://eventgrid.azure.net"


class EventGridTopics:
    def __init__(self, tokens: TokenIssuer) -> None:
        self.tokens = tokens
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Response:
        if self.tokens.check(request, {AUDIENCE}) is None:
            return Response.json(
                401,
                {
                    "error": {
                        "code": "Unauthorized",
                        "message": "The request authorization token is not valid.",
                    }
                },
            )
        if request.method != "POST" or request.path.rstrip("/") != "/api/events":
            return Response.json(404, {"error": {"code": "NotFound", "message": f"No route {request.path}"}})
        if not request.query.get("api-version"):
            return Response.json(400, {"error": {"code": "BadRequest", "message": "api-version is required"}})
        try:
            events = json.loads(request.body or b"[]")
        except ValueError:
            return Response.json(
                400, {"error": {"code": "BadRequest", "message": "The body is not valid JSON"}}
            )
        if not isinstance(events, list):
            return Response.json(400, {"error": {"code": "BadRequest", "message": "Expected a JSON array"}})
        received = time.time()
        with self._lock:
            for event in events:
                self._events.append(
                    {
                        "topicHost": request.host,
                        "receivedAt": received,
                        "contentType": request.headers.get("content-type"),
                        "event": event,
                    }
                )
        return Response.empty(200)

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
