"""The hub keeps many more targets going than it opens connections: libcurl queues a transfer
past the hub's connection cap until a connection is free (config.MAX_PARALLEL_TARGETS_ON_HUB)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pycurl
import pytest

from rotation import waits
from rotation.config import MAX_PARALLEL_TARGETS, MAX_PARALLEL_TARGETS_ON_HUB, parallel_targets
from rotation.hub import Hub


class Counting(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Answer)
        self.lock = threading.Lock()
        self.now = self.most = 0


class Answer(BaseHTTPRequestHandler):
    server: Counting

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.now += 1
            self.server.most = max(self.server.most, self.server.now)
        time.sleep(0.2)  # the service's latency: the requests overlap unless something queues them
        with self.server.lock:
            self.server.now -= 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Counting]:
    served = Counting()
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield served
    served.shutdown()
    served.server_close()


def test_transfers_past_the_connection_cap_wait_for_a_connection(server: Counting) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/"

    def get() -> int:
        curl = pycurl.Curl()
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.WRITEFUNCTION, lambda data: None)
        hub = waits.current_hub()
        assert hub is not None
        error = hub.transfer(curl)
        assert error is None
        status = int(curl.getinfo(pycurl.RESPONSE_CODE))
        curl.close()
        return status

    hub = Hub(connections=2)
    try:
        futures = [hub.submit(get) for _ in range(6)]
        assert [f.result(timeout=30) for f in futures] == [200] * 6
    finally:
        hub.shutdown()
    assert server.most == 2  # six targets at once, two connections


def test_the_hub_keeps_more_targets_in_flight_than_threads() -> None:
    assert parallel_targets("threads") == MAX_PARALLEL_TARGETS
    assert parallel_targets("hub") == MAX_PARALLEL_TARGETS_ON_HUB > MAX_PARALLEL_TARGETS
