"""The host's HTTP front, as `func start` serves it on http://127.0.0.1:7071:

- `/api/<route>`: HTTP-triggered functions; auth level `function` wants the function key (or
  the master key) in `x-functions-key` or `?code=`, `admin` wants the master key; else 401.
  Requests and responses go through azure-functions' own converters, as the host builds them.
- `POST /runtime/webhooks/eventgrid?functionName=NAME`: Event Grid deliveries, with the
  Event Grid extension's system key in `?code=`; 200 when every event's invocation succeeded,
  500 otherwise (Event Grid retries). A `SubscriptionValidation` event is answered.
- `GET /admin/functions` (master key): the functions and their triggers.
- `POST /admin/functions/NAME` (master key): run a non-HTTP function now, answered 202.
- `GET /admin/host/status`: `{"state": "Running"}`.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devstack.functions import FunctionIndex, HttpFunction
from devstack.functions_host import deliver_event_grid, http_request

log = logging.getLogger("devstack.host")
MAX_BODY = 100 * 1024 * 1024  # the host's own request limit; the app enforces its 64 KiB


class PortInUse(Exception):
    """The function app's port is taken: said with the address and how to choose another."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"{host}:{port} is already in use (another `make serve` or `func start`?): pick another "
            "port with --port N or LOCAL_FUNCTIONS_PORT=N (0: any free one)"
        )


def ensure_free(port: int, host: str = "127.0.0.1") -> None:
    """Fail before Azurite and the emulator start, not after, when the port is taken."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(host, port) from exc
            raise


@dataclass(frozen=True)
class HostKeys:
    """The keys `func start` would read from its key store; made fresh at each start."""

    function: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    master: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    eventgrid: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @staticmethod
    def _is(given: str | None, key: str) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), key.encode())

    def allows(self, level: str, given: str | None) -> bool:
        if level == "anonymous":
            return True
        if self._is(given, self.master):
            return True
        return level == "function" and self._is(given, self.function)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any) -> Reply:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json; charset=utf-8"})


def _invoked(name: str, started: float, error: BaseException | None) -> None:
    duration = (time.monotonic() - started) * 1000
    if error is None:
        log.info("Executed 'Functions.%s' (Succeeded, Duration=%.0fms)", name, duration)
    else:
        log.error("Executed 'Functions.%s' (Failed, Duration=%.0fms): %s", name, duration, error)


class FunctionsWebHost:
    """Routes one HTTP request to a function; `serve` binds it to a port."""

    def __init__(self, functions: FunctionIndex, keys: HostKeys, run_now: Callable[[str], bool]) -> None:
        self.functions = functions
        self.keys = keys
        self.run_now = run_now  # fires a non-HTTP function in the background; False if unknown
        self._server: ThreadingHTTPServer | None = None

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        given = headers.get("x-functions-key") or query.get("code")
        path = parts.path
        if path.lower().startswith("/api/"):
            return self._http(method, path[5:], parts, headers, query, body, given)
        if path.lower() == "/runtime/webhooks/eventgrid" and method == "POST":
            if not self.keys._is(query.get("code"), self.keys.eventgrid) and not self.keys._is(
                given, self.keys.master
            ):
                return Reply(401)
            return self._event_grid(query.get("functionName", ""), headers, body)
        if path.lower() == "/admin/host/status":
            return Reply.json(200, {"state": "Running", "id": "local"})
        if path.lower().rstrip("/") == "/admin/functions" and method == "GET":
            if not self.keys.allows("admin", given):
                return Reply(401)
            return Reply.json(200, {"value": self.functions.describe()})
        if path.lower().startswith("/admin/functions/") and method == "POST":
            if not self.keys.allows("admin", given):
                return Reply(401)
            return Reply(202) if self.run_now(path.rsplit("/", 1)[1]) else Reply(404)
        return Reply(404)

    def _http(
        self,
        method: str,
        route: str,
        parts: Any,
        headers: dict[str, str],
        query: dict[str, str],
        body: bytes,
        given: str | None,
    ) -> Reply:
        found = self.functions.route(method, route)
        if found is None:
            return Reply(404)
        function, params = found
        if not self.keys.allows(function.auth_level, given):
            return Reply(401)
        request = http_request(
            method,
            parts.path,
            body=body,
            headers=headers,
            query=query,
            route_params=params,
            base_url=f"http://{headers.get('host', '127.0.0.1')}",
        )
        return self._call_http(function, request)

    @staticmethod
    def _call_http(function: HttpFunction, request: Any) -> Reply:
        started = time.monotonic()
        try:
            response = function.call(request)
        except Exception as exc:  # noqa: BLE001 - the host answers 500 for a function that raised
            _invoked(function.name, started, exc)
            return Reply(500)
        _invoked(function.name, started, None)
        reply_headers = dict(response.headers)
        if response.mimetype:
            reply_headers.setdefault(
                "Content-Type", f"{response.mimetype}; charset={response.charset or 'utf-8'}"
            )
        return Reply(response.status_code, response.get_body() or b"", reply_headers)

    def _event_grid(self, name: str, headers: dict[str, str], body: bytes) -> Reply:
        function = next((f for f in self.functions.event_grid if f.name.lower() == name.lower()), None)
        if function is None:
            return Reply.json(404, {"error": f"no Event Grid function {name!r}"})
        try:
            payload = json.loads(body)
        except ValueError:
            return Reply.json(400, {"error": "the body is not JSON"})
        if headers.get("aeg-event-type", "").lower() == "subscriptionvalidation":
            first = payload[0] if isinstance(payload, list) and payload else {}
            return Reply.json(200, {"validationResponse": (first.get("data") or {}).get("validationCode")})
        started = time.monotonic()
        try:
            outcomes = deliver_event_grid(function.call, payload)
        except (ValueError, KeyError, TypeError) as exc:  # the converter could not read it
            _invoked(function.name, started, exc)
            return Reply.json(400, {"error": f"not an Event Grid event: {exc}"})
        failure = next((o for o in outcomes if o is not None), None)
        _invoked(function.name, started, failure)
        return Reply(500) if failure else Reply(200)

    # -- the socket --------------------------------------------------------------------------
    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._send(Reply(413))
                    return
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    reply = web.handle(self.command, self.path, headers, body)
                except Exception:  # the host never dies of one request
                    log.exception("host error on %s %s", self.command, urlsplit(self.path).path)
                    reply = Reply(500)
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("x-ms-invocation-id", str(uuid.uuid4()))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                return  # invocations are logged instead; URLs may carry ?code=

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(host, port) from exc
            raise
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="functions-http", daemon=True).start()
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
