"""The listener: an HTTP proxy that terminates TLS for emulated hosts and tunnels the rest.

One port serves three kinds of traffic:
- ``CONNECT host:443`` for an emulated host (``*.vault.azure.net``, ``*.managedhsm.azure.net``, ``management.azure.com``,
  Event Grid topics): answer 200, terminate TLS with a certificate for that name, then
  serve HTTP/1.1 requests on the tunnel (keep-alive) through the application.
- ``CONNECT`` for any other host: a plain byte tunnel, so pip and npm keep working in a
  shell that exported the emulator's settings.
- plain HTTP in origin form on loopback: the admin routes and the managed identity endpoint.

One thread per connection; the SDKs keep connections alive, so threads are few and long lived.
"""

from __future__ import annotations

import contextlib
import http.server
import select
import socket
import socketserver
import ssl
import sys
import threading
import time
from typing import Any, Protocol

from .http import Request, Response
from .tls import CertificateAuthority

_MAX_BODY = 8 * 1024 * 1024


class Application(Protocol):
    def intercepts(self, host: str) -> bool: ...
    def resolves(self, host: str) -> bool: ...
    def handle(self, request: Request) -> Response: ...


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], app: Application, ca: CertificateAuthority) -> None:
        self.app = app
        self.ca = ca
        super().__init__(address, _Handler)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        # A client that goes away mid-request (reset, broken pipe, TLS cut short) is ordinary for a
        # proxy: say nothing. The default prints a traceback to stderr, which EmulatorProcess pipes
        # and never reads: once the pipe is full, every thread that writes to it blocks for good.
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cmk-emulator"
    sys_version = ""
    timeout = 600  # idle keep-alive connections are closed after this
    # Headers and body go out as separate writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms on every response).
    disable_nagle_algorithm = True
    server: _Server
    tls_host: str | None = None

    def log_message(self, format: str, *args: object) -> None:  # quiet: the call log is the record
        return

    # -- CONNECT -----------------------------------------------------------------------
    def do_CONNECT(self) -> None:
        host, _, port_text = self.path.rpartition(":")
        host = host.strip("[]").lower()
        port = int(port_text) if port_text.isdigit() else 443
        if self.server.app.intercepts(host):
            if not self.server.app.resolves(host):
                # What a real proxy says when DNS has no answer for the name.
                self._plain_error(502, f"cannot resolve {host}")
                return
            self.send_response(200, "Connection Established")
            self.end_headers()
            self.wfile.flush()
            self._start_tls(host)
        else:
            self._tunnel(host, port)

    def _start_tls(self, host: str) -> None:
        context = self.server.ca.server_context(host)
        try:
            tls = context.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        self.connection = tls
        self.rfile = tls.makefile("rb", -1)
        self.wfile = socketserver._SocketWriter(tls)  # type: ignore[attr-defined]  # unbuffered writes, as StreamRequestHandler uses
        self.tls_host = host
        self.close_connection = False

    def _tunnel(self, host: str, port: int) -> None:
        try:
            upstream = socket.create_connection((host, port), timeout=15)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            self._plain_error(502, f"cannot connect to {host}:{port}: {exc}")
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        sockets = [self.connection, upstream]
        try:
            while True:
                readable, _, broken = select.select(sockets, [], sockets, 300)
                if broken or not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.connection else self.connection).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()

    # -- ordinary requests --------------------------------------------------------------
    def _serve(self) -> None:
        if self.tls_host is None and not self.path.startswith("/"):
            self._plain_error(501, "plain-HTTP proxying is not supported; use CONNECT (https)")
            return
        body = self._read_body()
        if body is None:
            return
        host = self.headers.get("Host") or self.tls_host or "127.0.0.1"
        request = Request.parse(
            self.command,
            self.path,
            host,
            dict(self.headers.items()),
            body,
            "https" if self.tls_host else "http",
        )
        try:
            response = self.server.app.handle(request)
        except Exception as exc:  # noqa: BLE001 - an emulator bug must answer 500, not hang the client
            response = Response.json(500, {"error": {"code": "EmulatorError", "message": repr(exc)}})
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    self._client_gone()
                    return None
                chunks.append(chunk)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._plain_error(413, "request body too large")
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self._client_gone()
            return None
        return body

    def _client_gone(self) -> None:
        """A body cut short is a client that went away (TLS reports a reset as a plain end of
        stream): serving it would answer, and record, a request nobody finished sending."""
        self.close_connection = True

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.chunks is not None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.chunks is not None:
            for chunk in response.chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif response.drip_s and response.body:
            for index in range(len(response.body)):  # a client that gives up ends this (a write fails)
                time.sleep(response.drip_s)
                self.wfile.write(response.body[index : index + 1])
        elif response.body:
            self.wfile.write(response.body)

    def _plain_error(self, status: int, message: str) -> None:
        body = message.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


class ProxyServer:
    """Runs the listener on a background thread."""

    def __init__(self, app: Application, ca: CertificateAuthority, host: str = "127.0.0.1", port: int = 0):
        self._server = _Server((host, port), app, ca)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
