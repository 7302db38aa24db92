"""The transport tests' local server (tests/unit/http_server.py) is quiet about a client that
goes away mid-answer, as those tests do on purpose; pytest's output stays free of tracebacks."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from tests.unit.http_server import serve


def test_a_client_that_resets_mid_answer_leaves_no_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with serve() as (port, seen):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        client.recv(1024)  # the answer has begun: 300 kB, more than the socket buffers hold
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset, not a goodbye
        deadline = time.monotonic() + 10
        while not seen.cut:
            assert time.monotonic() < deadline, "the server never noticed"
            time.sleep(0.01)  # the server's handler thread writes on a real socket
    assert "Exception occurred" not in capsys.readouterr().err
