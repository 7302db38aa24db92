"""The shared connections read proxy and CA-bundle settings from the environment once per origin,
and give the same answers as requests does (rotation/azure/session.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.utils
from azure.core.exceptions import ServiceRequestError
from azure.core.rest import HttpRequest

from rotation.azure.curl import CurlTransport
from rotation.azure.curlrequest import Routes
from rotation.azure.session import ca_bundle, proxy_for
from rotation.azure.transport import Urllib3Transport
from tests.unit.http_server import serve

TRANSPORTS = pytest.mark.parametrize("transport", [Urllib3Transport, CurlTransport], ids=["urllib3", "curl"])

URLS = [
    "https://management.azure.com/subscriptions/s/providers/x?api-version=1",
    "https://contoso-cmk.vault.azure.net/keys/k?api-version=7.5",
    "http://127.0.0.1:10002/devstoreaccount1/$batch",
]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return monkeypatch


def theirs(url: str) -> tuple[str | None, Any]:
    """What requests would have used for `url`: its proxy and what it verifies against."""
    chosen = requests.Session().merge_environment_settings(url, {}, None, None, None)
    return requests.utils.select_proxy(url, chosen["proxies"]), chosen["verify"]


def test_the_same_answers_as_requests(environment: pytest.MonkeyPatch) -> None:
    for url in URLS:
        assert (proxy_for(url), ca_bundle(True)) == theirs(url)
    assert proxy_for(URLS[0]) == "http://127.0.0.1:3128"
    assert proxy_for(URLS[2]) is None  # NO_PROXY covers loopback
    environment.setenv("HTTPS_PROXY", "http://127.0.0.1:8080")  # a changed variable is seen
    assert proxy_for(URLS[0]) == theirs(URLS[0])[0] == "http://127.0.0.1:8080"
    environment.delenv("REQUESTS_CA_BUNDLE")
    assert ca_bundle(True) == theirs(URLS[0])[1]  # certifi's, as requests'
    assert ca_bundle(False) is None and ca_bundle("/etc/ca.pem") == "/etc/ca.pem"


@pytest.fixture
def read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs requests' proxy rules were worked out for."""
    read: list[str] = []
    real = requests.utils.get_environ_proxies

    def counted(url: str, no_proxy: Any = None) -> Any:
        read.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.utils, "get_environ_proxies", counted)
    return read


def test_the_environment_is_read_once_per_origin(environment: pytest.MonkeyPatch, read: list[str]) -> None:
    environment.delenv("REQUESTS_CA_BUNDLE")  # certifi's: the https origins get a real context
    with serve() as (port, _):
        transport = Urllib3Transport()
        local = f"http://127.0.0.1:{port}/plain"
        for _ in range(50):
            assert transport.send(HttpRequest("GET", local)).text() == "ok"
            for url in URLS[:2]:
                transport.connections.route("https", url.split("/")[2], True, None)
        assert len(read) == 3
        environment.setenv("NO_PROXY", "127.0.0.1,localhost,::1")  # changed: read again
        assert transport.send(HttpRequest("GET", local)).text() == "ok"
    assert len(read) == 4


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_curl_transport_works_the_proxy_out_once_per_origin_and_sees_a_change_after_the_recheck(
    environment: pytest.MonkeyPatch, read: list[str]
) -> None:
    environment.setenv("NO_PROXY", "vault.azure.net")
    clock = Clock()
    routes = Routes(recheck=1.0, clock=clock)
    for _ in range(20):
        assert routes.proxy("https", "management.azure.com") == "http://127.0.0.1:3128"
        assert routes.proxy("https", "contoso.vault.azure.net") == ""  # explicitly none
    assert len(read) == 2
    environment.setenv("HTTPS_PROXY", "http://127.0.0.1:8080")
    assert routes.proxy("https", "management.azure.com") == "http://127.0.0.1:3128"  # not read yet
    clock.now = 1.0
    assert routes.proxy("https", "management.azure.com") == "http://127.0.0.1:8080"
    assert len(read) == 3


def test_the_curl_transport_reads_the_ca_bundle_with_the_proxy_variables(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The bundle requests would choose, read again when the proxy variables are (no two
    environment look-ups a request); an explicit choice is taken as given."""
    clock = Clock()
    routes = Routes(recheck=1.0, clock=clock)
    assert routes.bundle(True) == routes.bundle(None) == ca_bundle(True) == str(tmp_path / "ca.pem")
    environment.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "other.pem"))
    assert routes.bundle(True) == str(tmp_path / "ca.pem")  # not read yet
    clock.now = 1.0
    assert routes.bundle(True) == str(tmp_path / "other.pem") == ca_bundle(True)
    assert routes.bundle(False) is None and routes.bundle("/etc/ca.pem") == "/etc/ca.pem"


def closed_port() -> int:
    with socket.socket() as probe:  # bound, never listening: a connection is refused at once
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@TRANSPORTS
def test_a_request_goes_through_the_environments_proxy(
    transport: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("https_proxy", raising=False)
    with pytest.raises(ServiceRequestError, match="proxy"):
        transport().send(HttpRequest("GET", "https://management.azure.com/subscriptions"))


@TRANSPORTS
def test_a_plain_http_request_is_forwarded_by_the_proxy_whole(
    transport: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain http through a proxy: the proxy gets the whole URL (the local server echoes it)."""
    with serve() as (port, seen):
        monkeypatch.setenv("HTTP_PROXY", f"http://someone:s%40cret@127.0.0.1:{port}")
        monkeypatch.delenv("http_proxy", raising=False)
        monkeypatch.setenv("NO_PROXY", "")
        answer = transport().send(HttpRequest("GET", "http://storage.example/echo?x=1"))
    headers = {name.lower(): value for name, value in answer.json()["headers"].items()}
    assert seen.paths == ["http://storage.example/echo?x=1"]
    assert headers["proxy-authorization"] == "Basic c29tZW9uZTpzQGNyZXQ="  # someone:s@cret


@TRANSPORTS
def test_a_request_verifies_against_the_environments_ca_bundle(
    transport: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(OSError, match=r"missing\.pem"):  # chosen before any connection is made
        transport().send(HttpRequest("GET", f"https://127.0.0.1:{closed_port()}/"))


@TRANSPORTS
def test_a_netrc_entry_never_replaces_the_requests_own_authorization(
    transport: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with serve() as (port, _):
        request = HttpRequest("GET", f"http://127.0.0.1:{port}/echo", headers={"Authorization": "Bearer t"})
        echoed = json.loads(transport().send(request).text())
        bare = json.loads(transport().send(HttpRequest("GET", f"http://127.0.0.1:{port}/echo")).text())
    assert echoed["headers"]["Authorization"] == "Bearer t"
    assert "Authorization" not in bare["headers"]  # nor added where there was none
