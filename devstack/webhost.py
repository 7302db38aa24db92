"""The host's HTTP front, as `func start` serves it on http://127.0.0.1:7071:

- `/api/<route>`: HTTP-triggered functions; auth level `function` wants the function key (or
  the master key) in `x-functions-key` or `?code=`, `admin` wants the master key; else 401.
  Requests and responses go through azure-functions' own converters, as the host builds them.
- `POST /runtime/webhooks/eventgrid?functionName=NAME`: Event Grid deliveries, with the
  Event Grid extension's system key in `?code=`; 200 when every event's invocation succeeded,
  500 otherwise (Event Grid retries). A `SubscriptionValidation` event is answered.
- `GET /admin/functions` (master key): the functions and their triggers.
- `POST /admin/functions/NAME` (master key): run a non-HTTP function now, answered 202.
- `GET /admin/host/status`: `{"state": "Running", "id": <the instance>}`.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import logging
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from devstack.functions import FunctionIndex, HttpFunction
from devstack.functions_host import deliver_event_grid, http_request

log = logging.getLogger("devstack.host")
MAX_BODY = 100 * 1024 * 1024  # the host's own request limit; the app enforces its 64 KiB
# A request's line, headers and body must all arrive within this (Kestrel, under `func start`,
# allows 30 s for the headers): a client sending a byte a second is cut off, not waited on.
REQUEST_SECONDS = 30.0
# Connections served at once (one thread each); past it a new one is answered 503 and closed.
MAX_CONNECTIONS = 32
_LENGTH = re.compile(r"[0-9]{1,15}")


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

    def to_json(self) -> str:
        """For the app's other instances (devstack/instances.py): in Azure they share one key store."""
        return json.dumps({"function": self.function, "master": self.master, "eventgrid": self.eventgrid})

    @classmethod
    def from_json(cls, text: str) -> HostKeys:
        keys = json.loads(text)
        return cls(str(keys["function"]), str(keys["master"]), str(keys["eventgrid"]))

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

    def __init__(
        self,
        functions: FunctionIndex,
        keys: HostKeys,
        run_now: Callable[[str], bool],
        *,
        request_seconds: float = REQUEST_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
        instance: str = "local",
    ) -> None:
        self.functions = functions
        self.instance = instance  # /admin/host/status says which instance answered
        self.keys = keys
        self.run_now = run_now  # fires a non-HTTP function in the background; False if unknown
        self.request_seconds, self.max_connections = request_seconds, max_connections
        self._server: ThreadingHTTPServer | None = None

    def admit(self, method: str, target: str, headers: dict[str, str]) -> Reply | None:
        """The answer a request gets from its line and headers alone (no such route: 404; the
        wrong key: 401), or None when it may go on. Asked before any body is read."""
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        given = headers.get("x-functions-key") or query.get("code")
        path = parts.path.lower()
        if path.startswith("/api/"):
            found = self.functions.route(method, parts.path[5:])
            if found is None:
                return Reply(404)
            return None if self.keys.allows(found[0].auth_level, given) else Reply(401)
        if path == "/runtime/webhooks/eventgrid" and method == "POST":
            allowed = self.keys._is(query.get("code"), self.keys.eventgrid) or self.keys._is(
                given, self.keys.master
            )
            return None if allowed else Reply(401)
        if path.startswith("/admin/functions"):
            return None if self.keys.allows("admin", given) else Reply(401)
        return None

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        refused = self.admit(method, target, headers)
        if refused is not None:
            return refused
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        path = parts.path
        if path.lower().startswith("/api/"):
            return self._http(method, path[5:], parts, headers, query, body)
        if path.lower() == "/runtime/webhooks/eventgrid" and method == "POST":
            return self._event_grid(query.get("functionName", ""), headers, body)
        if path.lower() == "/admin/host/status":
            return Reply.json(200, {"state": "Running", "id": self.instance})
        if path.lower().rstrip("/") == "/admin/functions" and method == "GET":
            return Reply.json(200, {"value": self.functions.describe()})
        if path.lower().startswith("/admin/functions/") and method == "POST":
            return Reply(202) if self.run_now(path.rsplit("/", 1)[1]) else Reply(404)
        return Reply(404)

    def _http(
        self, method: str, route: str, parts: Any, headers: dict[str, str], query: dict[str, str], body: bytes
    ) -> Reply:
        found = self.functions.route(method, route)
        if found is None:
            return Reply(404)
        function, params = found
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
        try:
            self._server = _BoundedServer((host, port), _handler(self), self.max_connections)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(host, port) from exc
            raise
        threading.Thread(target=self._server.serve_forever, name="functions-http", daemon=True).start()
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _BoundedServer(ThreadingHTTPServer):
    """One thread per connection, at most `limit` of them: past that a connection is answered
    503 and closed at once, so slow or idle clients cannot grow the host's threads."""

    daemon_threads = True
    # Event Grid delivers many events at once; the default listen backlog of 5 reset some of 20
    request_queue_size = 128
    _BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limit: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(limit)
        self.watchdog = _Watchdog()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(self._BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_close(self) -> None:
        self.watchdog.stop()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client cut off (timed out, reset) is not the host's error
        log.debug("connection from %s ended", client_address, exc_info=True)


class _Watchdog:
    """One thread for every connection's deadline (not a timer thread each): calls a
    connection's cut-off when its request has not arrived whole in time."""

    def __init__(self) -> None:
        self._due: dict[int, tuple[float, Callable[[], None]]] = {}
        self._changed = threading.Condition()
        self._stopped = False
        threading.Thread(target=self._run, name="functions-http-watchdog", daemon=True).start()

    def arm(self, owner: object, seconds: float, cut_off: Callable[[], None]) -> None:
        with self._changed:
            self._due[id(owner)] = (time.monotonic() + seconds, cut_off)
            self._changed.notify()

    def disarm(self, owner: object) -> None:
        with self._changed:
            self._due.pop(id(owner), None)

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                if self._stopped:
                    return
                now = time.monotonic()
                late = [k for k, (due, _) in self._due.items() if due <= now]
                actions = [self._due.pop(k)[1] for k in late]
                if not actions:
                    nearest = min((due for due, _ in self._due.values()), default=now + 60)
                    self._changed.wait(nearest - now)
                    continue
            for cut_off in actions:
                cut_off()


def _content_length(headers: Any) -> int | Reply:
    """The declared body size, or the answer for one that is not a size (400) or too big (413)."""
    if headers.get("Transfer-Encoding"):
        return Reply(411)  # the app reads sized bodies only
    declared = headers.get_all("Content-Length") or []
    if not declared:
        return 0
    if len(declared) > 1 or not _LENGTH.fullmatch(declared[0].strip()):
        return Reply(400, b"Content-Length must be one non-negative decimal number")
    length = int(declared[0])
    return Reply(413) if length > MAX_BODY else length


def _handler(web: FunctionsWebHost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one_request(self) -> None:
            # Line, headers and body must all arrive within the request's time: the watchdog
            # closes the socket otherwise (a per-read timeout never fires for a byte a second).
            watchdog = cast("_BoundedServer", self.server).watchdog
            watchdog.arm(self, web.request_seconds, self._cut_off)
            try:
                super().handle_one_request()
            finally:
                watchdog.disarm(self)

        def _cut_off(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def _any(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = _content_length(self.headers)
            # Nothing of the body is read before the key is known good and the size sane.
            refused = web.admit(self.command, self.path, headers)
            if refused is None and isinstance(length, Reply):
                refused = length
            if refused is not None or isinstance(length, Reply):
                self.close_connection = True  # the body (if any) stays unread: this connection ends
                self._send(refused or Reply(400), close=True)
                return
            body = self.rfile.read(length) if length else b""
            cast("_BoundedServer", self.server).watchdog.disarm(
                self
            )  # all in: the function may take its time
            try:
                reply = web.handle(self.command, self.path, headers, body)
            except Exception:  # the host never dies of one request
                log.exception("host error on %s %s", self.command, urlsplit(self.path).path)
                reply = Reply(500)
            self._send(reply)

        def _send(self, reply: Reply, close: bool = False) -> None:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("x-ms-invocation-id", str(uuid.uuid4()))
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            return  # invocations are logged instead; URLs may carry ?code=

    return Handler
