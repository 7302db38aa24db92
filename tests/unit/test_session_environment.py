"""The shared requests session reads proxy and CA-bundle settings from the environment once per
origin, and gives the same answers as requests does (rotation/azure/session.py)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import requests
import requests.sessions

from rotation.azure.session import EnvironmentOnceSession

URLS = [
    "https://management.azure.com/subscriptions/s/providers/x?api-version=1",
    "https://contoso-cmk.vault.azure.net/keys/k?api-version=7.5",
    "http://127.0.0.1:10002/devstoreaccount1/$batch",
]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return monkeypatch


def settings(session: requests.Session, url: str) -> dict[str, Any]:
    return dict(session.merge_environment_settings(url, {}, None, None, None))


def test_the_same_answers_as_requests(environment: pytest.MonkeyPatch) -> None:
    ours, theirs = EnvironmentOnceSession(), requests.Session()
    for url in URLS * 2:
        assert settings(ours, url) == settings(theirs, url)
    assert settings(ours, URLS[0])["proxies"]["https"] == "http://127.0.0.1:3128"
    assert settings(ours, URLS[2])["proxies"] == {}  # NO_PROXY covers loopback
    environment.setenv("HTTPS_PROXY", "http://127.0.0.1:8080")  # a changed variable is seen
    assert settings(ours, URLS[0]) == settings(theirs, URLS[0])
    assert settings(ours, URLS[0])["proxies"]["https"] == "http://127.0.0.1:8080"
    given = {"https": "http://10.0.0.1:3128"}  # a request's own proxies win, as in requests
    mine = ours.merge_environment_settings(URLS[0], dict(given), None, None, None)
    assert mine == theirs.merge_environment_settings(URLS[0], dict(given), None, None, None)
    assert mine["proxies"]["https"] == given["https"]


def test_the_environment_is_read_once_per_origin(
    environment: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counted(url: str, no_proxy: Any = None) -> Any:
        read.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    session = EnvironmentOnceSession()
    for _ in range(50):
        for url in URLS:
            settings(session, url)
    assert len(read) == len(URLS)
    changed = settings(session, URLS[0])
    changed["proxies"]["https"] = "changed by a caller"  # a caller's copy, not the kept one
    assert settings(session, URLS[0])["proxies"]["https"] == "http://127.0.0.1:3128"


def closed_port() -> int:
    with socket.socket() as probe:  # bound, never listening: a connection is refused at once
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_request_goes_through_the_environments_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(requests.exceptions.ProxyError):
        EnvironmentOnceSession().get("https://management.azure.com/subscriptions", timeout=5)


def test_a_request_verifies_against_the_environments_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(OSError, match=r"missing\.pem"):  # chosen before any connection is made
        EnvironmentOnceSession().get(f"https://127.0.0.1:{closed_port()}/", timeout=5)


def test_a_netrc_entry_never_replaces_the_requests_own_authorization(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine management.azure.com login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    request = requests.Request(
        "GET", "https://management.azure.com/subscriptions", headers={"Authorization": "Bearer t"}
    )
    assert requests.Session().prepare_request(request).headers["Authorization"].startswith("Basic")
    assert EnvironmentOnceSession().prepare_request(request).headers["Authorization"] == "Bearer t"
