"""Issue 21 item 7: the local host (`make serve`) against raw sockets. Slow clients are timed
out and the threads that serve them are bounded; the function key is checked before a body is
read; a Content-Length that is negative, not a number or too large is answered (400, 413),
never read to the end of the stream or dropped without an answer."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import azure.functions as func
import pytest

from devstack.functions import FunctionIndex, HttpFunction
from devstack.webhost import MAX_BODY, FunctionsWebHost, HostKeys, _BoundedServer

REQUEST_SECONDS = 1.0
MAX_CONNECTIONS = 8


@pytest.fixture
def served() -> Iterator[tuple[int, HostKeys]]:
    echo = HttpFunction(
        "echo", "echo/{name}", frozenset({"POST"}), "function", lambda req: func.HttpResponse(req.get_body())
    )
    keys = HostKeys()
    web = FunctionsWebHost(
        FunctionIndex([echo], [], [], []),
        keys,
        lambda name: False,
        request_seconds=REQUEST_SECONDS,
        max_connections=MAX_CONNECTIONS,
    )
    port = web.serve(0)
    yield port, keys
    web.stop()


def _connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.settimeout(3)
    return conn


def _answer(conn: socket.socket) -> tuple[int, bytes]:
    """The status and body of the answer on `conn` (fails the test when none comes within 3 s)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        assert chunk, f"connection closed without an answer (got {data!r})"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        body += conn.recv(4096)
    return int(head.split(b" ", 2)[1]), body


def _status(conn: socket.socket) -> int:
    return _answer(conn)[0]


def _head(key: str | None, length: str | None, path: str = "/api/echo/x") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    if key is not None:
        lines.append(f"x-functions-key: {key}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_good_request_is_still_answered_twice_on_one_connection(served) -> None:
    port, keys = served
    with _connect(port) as conn:
        for word in (b"hi", b"yo"):
            conn.sendall(_head(keys.function, "2") + word)
            assert _answer(conn) == (200, word)


def test_the_key_is_checked_before_the_body_is_read(served) -> None:
    port, _ = served
    with _connect(port) as conn:
        conn.sendall(_head(None, str(MAX_BODY)))  # the body never comes
        assert _status(conn) == 401


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "\u00b2", "5, 5"])
def test_a_content_length_that_is_not_a_size_is_answered_400(served, length: str) -> None:
    port, keys = served
    with _connect(port) as conn:
        conn.sendall(_head(keys.function, length) + b"hello")
        assert _status(conn) == 400


def test_a_body_over_the_limit_is_answered_413_unread(served) -> None:
    port, keys = served
    with _connect(port) as conn:
        conn.sendall(_head(keys.function, str(MAX_BODY + 1)))
        assert _status(conn) == 413


def _closed(conn: socket.socket) -> bool:
    """Whether the host closed `conn` (an answer it sent first, a 408 or 503, is fine)."""
    try:
        conn.settimeout(0.2)
        while True:
            data = conn.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def test_sixty_clients_sending_a_byte_a_second_are_closed_and_threads_stay_bounded(served) -> None:
    port, keys = served
    before = threading.active_count()
    request = _head(keys.function, "100000")
    conns = [_connect(port) for _ in range(60)]
    peak, sent = before, 0
    deadline = time.monotonic() + REQUEST_SECONDS * 4
    while time.monotonic() < deadline:
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.send(request[sent % len(request) : sent % len(request) + 1])
        sent += 1
        peak = max(peak, threading.active_count())
        time.sleep(0.25)  # slow clients on real sockets: the host's watchdog runs on real time
    still_open = [c for c in conns if not _closed(c)]
    for conn in conns:
        conn.close()
    assert still_open == []
    assert peak <= before + MAX_CONNECTIONS, (before, peak)  # one thread per connection served


def test_a_chunked_body_is_refused_411_not_read_as_the_next_request(served) -> None:
    port, keys = served
    with _connect(port) as conn:
        head = _head(keys.function, None).replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.sendall(head + b"5\r\nhello\r\n0\r\n\r\n")
        assert _status(conn) == 411
        assert _closed(conn)


def test_twenty_connections_arriving_at_once_all_wait_in_the_listen_backlog() -> None:
    # the accept loop is not running: every connection must fit in the kernel's listen queue
    # (Event Grid opens many at once; a backlog of 5 dropped or reset the rest)
    server = _BoundedServer(("127.0.0.1", 0), BaseHTTPRequestHandler, 8)
    port = server.server_address[1]
    opened: list[socket.socket] = []
    try:
        for _ in range(20):
            opened.append(socket.create_connection(("127.0.0.1", port), timeout=1))
    except OSError:
        pass
    finally:
        for conn in opened:
            conn.close()
        server.server_close()
    assert len(opened) == 20
