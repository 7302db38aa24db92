"""The shared connections verify TLS against a CA bundle with one SSL context per bundle file,
still refusing an unknown CA or the wrong host name (rotation/azure/session.py; the refusals also
on the libcurl transport, curl.py)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.core.exceptions import ServiceRequestError
from azure.core.rest import HttpRequest
from urllib3 import HTTPConnectionPool

from rotation.azure.curl import CurlTransport
from rotation.azure.transport import Urllib3Transport
from tests.unit.http_server import serve


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


TRANSPORTS = pytest.mark.parametrize("transport", [Urllib3Transport, CurlTransport], ids=["urllib3", "curl"])


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def bundle(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "bundle.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(path))  # as .env.emulator sets it
    return str(path)


def get(transport: Urllib3Transport | CurlTransport, url: str, **kwargs: Any) -> str:
    return transport.send(HttpRequest("GET", url), **kwargs).text()


def pool(transport: Urllib3Transport, port: int) -> HTTPConnectionPool:
    opener, _ = transport.connections.route("https", f"localhost:{port}", True, None)
    assert isinstance(opener, HTTPConnectionPool)
    return opener


def test_connections_share_one_verifying_context(ca: trustme.CA, bundle: str) -> None:
    transport = Urllib3Transport(pool_size=8)
    with serve(ca) as (port, seen), ThreadPoolExecutor(max_workers=4) as workers:
        seen.pairs = threading.Barrier(2, timeout=10)
        answers = list(workers.map(lambda _: get(transport, f"https://localhost:{port}/pairs"), range(8)))
        idle = [conn for conn in pool(transport, port).pool.queue if conn is not None and conn.sock]  # type: ignore[union-attr]
    assert answers == ["ok"] * 8
    assert len(idle) > 1  # several connections...
    assert len({id(conn.sock.context) for conn in idle}) == 1  # ...one context (urllib3 makes one each)


@TRANSPORTS
def test_an_unknown_ca_is_refused(
    transport: type, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    with (
        serve(ca) as (port, _),
        pytest.raises(ServiceRequestError, match=r"CERTIFICATE_VERIFY_FAILED|verify result"),
    ):
        get(transport(), f"https://localhost:{port}/")


@TRANSPORTS
def test_the_wrong_host_name_is_refused(transport: type, ca: trustme.CA, bundle: str) -> None:
    with serve(ca, "wrong.example") as (port, _), pytest.raises(ServiceRequestError, match="localhost"):
        get(transport(), f"https://localhost:{port}/")


@TRANSPORTS
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # asked for
def test_verify_off_is_still_off(transport: type, ca: trustme.CA, bundle: str) -> None:
    with serve(ca, "wrong.example") as (port, _):
        assert get(transport(connection_verify=False), f"https://localhost:{port}/") == "ok"
        assert get(transport(), f"https://localhost:{port}/", connection_verify=False) == "ok"
        with pytest.raises(ServiceRequestError):  # per call: the next one verifies again
            get(transport(), f"https://localhost:{port}/")


def test_a_kept_route_checks_its_bundle_file_once_a_request(
    ca: trustme.CA, bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests checked the bundle's existence and kind twice a request (four file-system calls);
    a route already set up for the same settings and the same file needs one stat of it."""
    transport = Urllib3Transport()
    with serve(ca) as (port, _):
        url = f"https://localhost:{port}/"
        assert get(transport, url) == "ok"  # the route is set up
        looked: list[str] = []
        real_stat = os.stat

        def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            looked.append(str(path))
            return real_stat(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", stat)  # os.path.exists and isdir stat too
        answers = [get(transport, url) for _ in range(10)]
        monkeypatch.setattr(os, "stat", real_stat)
    assert answers == ["ok"] * 10
    assert looked.count(bundle) == 10


def test_a_replaced_bundle_sets_the_pool_up_again(ca: trustme.CA, bundle: str) -> None:
    transport = Urllib3Transport()
    with serve(ca) as (port, seen):
        url = f"https://localhost:{port}/"
        assert get(transport, url) == "ok"
        first = pool(transport, port)
        later = os.stat(bundle).st_mtime_ns + 1_000_000_000
        os.utime(bundle, ns=(later, later))  # the same CAs, written again
        assert get(transport, url) == "ok"
        assert pool(transport, port).conn_kw["ssl_context"] is not first.conn_kw["ssl_context"]
    assert seen.connections == 2  # loaded from the new file, connected with it


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # asked for
def test_the_pool_is_set_up_once_per_origin_and_again_after_close(ca: trustme.CA, bundle: str) -> None:
    transport = Urllib3Transport()
    with serve(ca) as (port, seen):
        url = f"https://localhost:{port}/"
        assert [get(transport, url) for _ in range(10)] == ["ok"] * 10
        first = pool(transport, port)
        assert seen.connections == 1
        transport.close()  # its pools closed; it still answers, with new ones
        assert first.pool is None
        assert get(transport, url) == "ok" and pool(transport, port) is not first
        assert get(transport, f"https://127.0.0.1:{port}/", connection_verify=False) == "ok"  # another origin
    assert seen.connections == 3
