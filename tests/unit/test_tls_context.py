"""The shared session's adapter verifies TLS against a CA bundle with one SSL context per bundle
file, still refusing an unknown CA or the wrong host name (rotation/azure/session.py)."""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme

from rotation.azure.session import SharedContextAdapter


class Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: connections go back to the pool
    # Requests answer in pairs when set: two are in flight at once, so the pool must open
    # a second connection (a meeting, not a guess at how long a sleep makes them overlap).
    pairs: threading.Barrier | None = None

    def do_GET(self) -> None:
        if self.pairs is not None:
            self.pairs.wait()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def serve(ca: trustme.CA, hostname: str) -> Iterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(hostname).configure_cert(context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def bundle(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "bundle.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def session(bundle: str) -> tuple[requests.Session, SharedContextAdapter]:
    s = requests.Session()
    s.trust_env = False  # no proxy from the environment: straight to the local server
    s.verify = bundle
    adapter = SharedContextAdapter(pool_maxsize=8)
    s.mount("https://", adapter)
    return s, adapter


def test_connections_share_one_verifying_context(
    ca: trustme.CA, bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, adapter = session(bundle)
    monkeypatch.setattr(Slow, "pairs", threading.Barrier(2, timeout=10))
    with serve(ca, "localhost") as port, ThreadPoolExecutor(max_workers=4) as pool:
        url = f"https://localhost:{port}/"
        answers = list(pool.map(lambda _: s.get(url).text, range(8)))
    assert answers == ["ok"] * 8
    [key] = adapter.poolmanager.pools.keys()
    idle = [conn for conn in adapter.poolmanager.pools[key].pool.queue if conn is not None and conn.sock]
    assert len(idle) > 1  # several connections...
    assert len({id(conn.sock.context) for conn in idle}) == 1  # ...one context (urllib3 makes one each)


def test_an_unknown_ca_is_refused(ca: trustme.CA, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    s, _ = session(str(other))
    with serve(ca, "localhost") as port, pytest.raises(requests.exceptions.SSLError):
        s.get(f"https://localhost:{port}/")


def test_the_wrong_host_name_is_refused(ca: trustme.CA, bundle: str) -> None:
    s, _ = session(bundle)
    with serve(ca, "wrong.example") as port, pytest.raises(requests.exceptions.SSLError):
        s.get(f"https://localhost:{port}/")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # asked for
def test_verify_off_is_still_off(ca: trustme.CA, bundle: str) -> None:
    s, _ = session(bundle)
    with serve(ca, "wrong.example") as port:
        assert s.get(f"https://localhost:{port}/", verify=False).text == "ok"


def test_a_pool_set_up_once_checks_its_bundle_file_once_a_request(
    ca: trustme.CA, bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests checked the bundle's existence and kind twice a request (four file-system calls);
    a pool already set up for the same settings and the same file needs one stat of it."""
    s, _ = session(bundle)
    with serve(ca, "localhost") as port:
        url = f"https://localhost:{port}/"
        assert s.get(url).text == "ok"  # the pool is set up
        looked: list[str] = []
        real_stat = os.stat

        def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            looked.append(str(path))
            return real_stat(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", stat)  # os.path.exists and isdir stat too
        answers = [s.get(url).text for _ in range(10)]
        monkeypatch.setattr(os, "stat", real_stat)
    assert answers == ["ok"] * 10
    assert looked.count(bundle) == 10


def test_a_replaced_bundle_sets_the_pool_up_again(ca: trustme.CA, bundle: str) -> None:
    s, adapter = session(bundle)

    def context() -> Any:
        [key] = adapter.poolmanager.pools.keys()
        return adapter.poolmanager.pools[key].conn_kw["ssl_context"]

    with serve(ca, "localhost") as port:
        url = f"https://localhost:{port}/"
        assert s.get(url).text == "ok"
        first = context()
        later = os.stat(bundle).st_mtime_ns + 1_000_000_000
        os.utime(bundle, ns=(later, later))  # the same CAs, written again
        assert s.get(url).text == "ok"
    assert context() is not first  # loaded from the new file


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # asked for
def test_the_pool_is_looked_up_once_per_origin_and_again_after_close(
    ca: trustme.CA, bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, adapter = session(bundle)
    manager = adapter.poolmanager
    looked: list[str] = []
    real = manager.connection_from_host

    def counted(host: str | None, *args: Any, **kwargs: Any) -> Any:
        looked.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(manager, "connection_from_host", counted)
    with serve(ca, "localhost") as port:
        url = f"https://localhost:{port}/"
        assert [s.get(url).text for _ in range(10)] == ["ok"] * 10
        assert looked == ["localhost"]
        [key] = manager.pools.keys()
        first = manager.pools[key]
        s.close()  # the session's pools closed; it still answers, with new ones
        assert first.pool is None
        assert s.get(url).text == "ok"
        assert s.get(f"https://127.0.0.1:{port}/", verify=False).text == "ok"  # another origin
    assert looked == ["localhost", "localhost", "127.0.0.1"]
