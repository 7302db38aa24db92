"""A local HTTP(S) server for the transport's tests: keep-alive connections it counts, and answers
by path (a plain body, gzip, a large body, a redirect, an echo of the request, silence, a cut
before the answer or in its body)."""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import trustme


@dataclass
class Seen:
    """What the server saw: connections accepted, requests by path. `pairs`: answer "/pairs" two
    at a time (two requests in flight at once: the pool must open a second connection)."""

    connections: int = 0
    paths: list[str] = field(default_factory=list)
    pairs: threading.Barrier | None = None
    done: threading.Event = field(default_factory=threading.Event)  # set at shutdown: silence ends
    cut: int = 0  # requests whose client went away before the answer was read or written


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: connections go back to the pool
    wbufsize, disable_nagle_algorithm = 1 << 16, True  # an answer in one write: no delayed-ACK waits
    seen: Seen

    def _answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        self.seen.paths.append(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path  # a forwarding proxy is sent the whole URL
        if path == "/pairs" and self.seen.pairs is not None:
            self.seen.pairs.wait()
        if path == "/gzip":
            self._answer(200, gzip.compress(b"z" * 100_000), Content_Encoding="gzip")
        elif path == "/big":
            self._answer(200, b"x" * 300_000)
        elif path == "/redirect":
            self._answer(302, b"", Location="https://evil.test/steal")
        elif path == "/echo":
            echoed = {"method": self.command, "path": self.path, "headers": dict(self.headers.items())}
            self._answer(
                200, json.dumps({**echoed, "body": body.decode()}).encode(), Content_Type="application/json"
            )
        elif path == "/silent":
            self.seen.done.wait(30)  # never answers while the test runs
        elif path == "/short":  # promises 100 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path == "/cut":
            self.connection.shutdown(socket.SHUT_RDWR)  # the request arrived; no answer ever will
        else:
            self._answer(200, b"ok", Content_Type="text/plain; charset=utf-8")

    do_GET = do_POST = do_PUT = _route

    def log_message(self, *_: Any) -> None:
        pass


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, seen: Seen, context: ssl.SSLContext | None) -> None:
        handler = type("Bound", (Handler,), {"seen": seen})
        super().__init__(("127.0.0.1", 0), handler)
        self.seen, self.context = seen, context

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about a client that went away: the tests cut connections on purpose (a stream
        left half read, a certificate refused). Anything else is printed as before."""
        if isinstance(sys.exc_info()[1], OSError):  # ConnectionResetError, BrokenPipeError, SSLError
            self.seen.cut += 1
            return
        super().handle_error(request, client_address)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        self.seen.connections += 1
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True)
        return sock, address


@contextmanager
def serve(ca: trustme.CA | None = None, hostname: str = "localhost") -> Iterator[tuple[int, Seen]]:
    """(port, what it saw): https with a certificate for `hostname` from `ca`, else plain http."""
    context = None
    if ca is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(hostname).configure_cert(context)
    seen = Seen()
    server = CountingServer(seen, context)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server.server_address[1], seen
    finally:
        seen.done.set()
        server.shutdown()
        server.server_close()
