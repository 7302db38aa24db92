"""The emulator's listener: the CONNECT proxy (emulated hosts terminated with the throwaway CA,
unknown vaults refused, every other host tunnelled untouched), many concurrent connections, the
managed identity endpoint and the admin routes."""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.keyvault.keys import KeyClient
from azure.storage.blob import BlobServiceClient

from emulator import Emulator
from tests.scenarios import SUB_A, VAULT, VAULT_HOST, key, key_id, registry, scenario, version, vid

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "emulator" / "scenarios" / "sample.json"
KV_API = "api-version=2025-07-01"
ACR_API = "api-version=2025-11-01"


def proxy_address(stack: Any) -> tuple[str, int]:
    parts = urlsplit(stack.env["HTTPS_PROXY"])
    return parts.hostname, parts.port


def read_http_response(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes the connection."""
    chunks: list[bytes] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def connect(stack: Any, target: str) -> tuple[socket.socket, bytes]:
    """Open a CONNECT tunnel through the emulator; returns the socket and the proxy's answer head."""
    sock = socket.create_connection(proxy_address(stack), timeout=10)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)
        if not data:
            break
        head += data
    return sock, head


@pytest.fixture
def estate(stack: Any) -> Any:
    stack.load(
        scenario(
            {"app-cmk": key(version("v1", created="-40d", exp="+325d"))},
            registries=[registry("reg1", key_id("app-cmk", vid("v1")))],
        )
    )
    return stack


# -- CONNECT -----------------------------------------------------------------------------------------
def test_unknown_vault_hostname_fails_at_connect(estate: Any) -> None:
    kv = KeyClient("https://nosuch-vault.vault.azure.net", DefaultAzureCredential(), retry_total=0)
    with pytest.raises(ServiceRequestError):
        kv.get_key("app-cmk")
    assert not [c for c in estate.admin.calls()["calls"] if c["host"].startswith("nosuch-vault")]

    sock, head = connect(estate, "nosuch-vault.vault.azure.net:443")
    with sock:
        rest = read_http_response(sock)
    assert head.startswith(b"HTTP/1.1 502")
    assert b"cannot resolve nosuch-vault.vault.azure.net" in rest
    # The vault that exists is answered on the same listener.
    assert KeyClient(f"https://{VAULT_HOST}", DefaultAzureCredential()).get_key("app-cmk").name == "app-cmk"


def test_emulated_hosts_present_certificates_from_the_emulator_ca(estate: Any) -> None:
    url = f"https://{VAULT_HOST}/keys/app-cmk?{KV_API}"
    assert requests.get(url, timeout=10).status_code == 401  # trusted through REQUESTS_CA_BUNDLE
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=10, verify=certifi.where())  # public CAs alone do not vouch for it
    bundle = Path(os.environ["REQUESTS_CA_BUNDLE"]).read_text()
    assert bundle.count("BEGIN CERTIFICATE") > 10  # the emulator CA plus the system CAs


def test_other_hosts_are_tunnelled_untouched(estate: Any, azurite: Any) -> None:
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = blobs.create_container("tunnel", public_access="blob")
    container.upload_blob("hello.txt", b"hello through the tunnel")
    port = azurite.ports["blob"]

    sock, head = connect(estate, f"127.0.0.1:{port}")
    with sock:
        assert head.startswith(b"HTTP/1.1 200")
        sock.sendall(
            f"GET /devstoreaccount1/tunnel/hello.txt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "x-ms-version: 2021-08-06\r\nConnection: close\r\n\r\n".encode()
        )
        answer = read_http_response(sock)
    status, _, rest = answer.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200")
    assert b"server: azurite-blob" in headers.lower()
    assert body == b"hello through the tunnel"
    # Tunnelled traffic is not the emulator's: it records no call for it.
    assert all(c["host"] != "127.0.0.1" for c in estate.admin.calls()["calls"])


def test_plain_http_proxying_is_refused(estate: Any) -> None:
    proxy = estate.env["HTTPS_PROXY"]
    answer = requests.get("http://example.invalid/", proxies={"http": proxy}, timeout=10)
    assert answer.status_code == 501


def test_200_concurrent_connections(estate: Any) -> None:
    identity = ManagedIdentityCredential()
    vault_token = identity.get_token("https://vault.azure.net/.default").token
    arm_token = identity.get_token("https://management.azure.com/.default").token
    vault_url = f"https://{VAULT_HOST}/keys/app-cmk?{KV_API}"
    arm_url = (
        f"https://management.azure.com/subscriptions/{SUB_A}/resourceGroups/rg-acr/providers/"
        f"Microsoft.ContainerRegistry/registries/reg1?{ACR_API}"
    )
    count = 200
    barrier = threading.Barrier(count)
    estate.admin.clear_calls()

    def one(n: int) -> tuple[int, str]:
        url, token = (vault_url, vault_token) if n % 2 else (arm_url, arm_token)
        with requests.Session() as session:
            barrier.wait(timeout=60)
            answer = session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            return answer.status_code, answer.json().get("name") or answer.json()["key"]["kid"]

    started = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(one, range(count)))
    elapsed = time.monotonic() - started

    assert [status for status, _ in results] == [200] * count
    assert {name for _, name in results} == {"reg1", f"https://{VAULT_HOST}/keys/app-cmk/{vid('v1')}"}
    snapshot = estate.admin.calls()
    assert snapshot["total"] == count and snapshot["byStatus"] == {"200": count}
    assert elapsed < 30


def test_event_grid_topic_records_what_the_publisher_sends(estate: Any) -> None:
    endpoint = "https://cmk-outcomes.westeurope-1.eventgrid.azure.net/api/events"
    publisher = EventGridPublisherClient(endpoint, DefaultAzureCredential())
    publisher.send(
        [CloudEvent(source="/cmk-rotation", type="Contoso.Rotation.Completed", data={"runId": "r-1"})]
    )
    [received] = estate.admin.events()
    assert received["topicHost"] == "cmk-outcomes.westeurope-1.eventgrid.azure.net"
    assert received["contentType"].startswith("application/cloudevents-batch+json")
    assert received["event"]["type"] == "Contoso.Rotation.Completed"
    assert received["event"]["data"] == {"runId": "r-1"}
    with pytest.raises(ClientAuthenticationError):
        EventGridPublisherClient(endpoint, ArmOnly()).send(
            [CloudEvent(source="/x", type="Contoso.Rotation.Completed", data={})]
        )
    assert len(estate.admin.events()) == 1


class ArmOnly:
    """A credential that hands out a real token, but for ARM whatever scope is asked."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return ManagedIdentityCredential().get_token("https://management.azure.com/.default")


# -- managed identity endpoint ---------------------------------------------------------------------
def test_identity_endpoint_checks_the_identity_header(estate: Any) -> None:
    endpoint = estate.env["IDENTITY_ENDPOINT"]
    params = {"api-version": "2019-08-01", "resource": "https://vault.azure.net"}
    refused = requests.get(endpoint, params=params, headers={"X-IDENTITY-HEADER": "wrong"}, timeout=10)
    assert refused.status_code == 401
    missing = requests.get(endpoint, params=params, timeout=10)
    assert missing.status_code == 401
    granted = requests.get(
        endpoint, params=params, headers={"X-IDENTITY-HEADER": estate.env["IDENTITY_HEADER"]}, timeout=10
    )
    assert granted.status_code == 200
    assert {"access_token", "expires_on", "resource", "token_type"} <= set(granted.json())
    assert int(granted.json()["expires_on"]) > time.time()

    estate.monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
    identity_calls = [c["status"] for c in estate.admin.calls()["calls"] if c["host"] == "identity"]
    assert identity_calls[:3] == [401, 401, 200] and identity_calls[-1] == 401


# -- admin routes --------------------------------------------------------------------------------------
def test_state_round_trips_through_post_scenario(stack: Any) -> None:
    stack.load(json.loads(SAMPLE.read_text()))
    # Change the estate through the SDK, so the state holds more than the file did.
    kv = KeyClient(f"https://{VAULT_HOST}", DefaultAzureCredential())
    rotated = kv.create_rsa_key("acr-cmk", size=3072, tags={"made": "here"})
    first = stack.admin.state()
    assert rotated.properties.version in [
        v["version"] for v in first["vaults"][VAULT]["keys"]["acr-cmk"]["versions"]
    ]

    stack.admin.load_scenario(first)
    second = stack.admin.state()

    assert second == first
    assert len(second["registries"]) == 7 and len(second["batchAccounts"]) == 3
    assert kv.get_key("acr-cmk").properties.version == rotated.properties.version
    assert kv.get_key("acr-cmk").properties.tags == {"made": "here"}


def test_invalid_scenario_is_refused_naming_the_field(estate: Any) -> None:
    before = estate.admin.state()
    bad = scenario({"app-cmk": key(version("v1"))})
    bad["vaults"][VAULT]["keys"]["app-cmk"]["versions"][0]["version"] = "not-hex"
    with pytest.raises(RuntimeError) as refused:
        estate.admin.load_scenario(bad)
    assert ": 400 " in str(refused.value)
    assert "vaults['contoso-cmk'].keys['app-cmk'].versions[0].version" in str(refused.value)
    with pytest.raises(RuntimeError, match=r"registries\[0\]\.id"):
        estate.admin.load_scenario({"registries": [{"id": "/subscriptions/x/resourceGroups/y"}]})
    assert estate.admin.state() == before


def test_relative_times_resolve_to_epoch_seconds(estate: Any) -> None:
    loaded_at = time.time()
    stored = estate.admin.state()["vaults"][VAULT]["keys"]["app-cmk"]["versions"][0]
    assert isinstance(stored["created"], int) and isinstance(stored["exp"], int)
    assert abs(stored["created"] - (loaded_at - 40 * 86400)) < 10
    assert abs(stored["exp"] - (loaded_at + 325 * 86400)) < 10
    expires = (
        KeyClient(f"https://{VAULT_HOST}", DefaultAzureCredential()).get_key("app-cmk").properties.expires_on
    )
    assert expires is not None and int(expires.timestamp()) == stored["exp"]


def test_admin_routes_answer_errors_plainly(estate: Any) -> None:
    admin = estate.env["EMULATOR_ADMIN_URL"]
    assert requests.get(f"{admin}/nothing-here", timeout=10).status_code == 404
    assert requests.post(f"{admin}/scenario", data=b"{not json", timeout=10).status_code == 400
    assert requests.post(f"{admin}/throttling", json={"enabled": "yes"}, timeout=10).status_code == 400
    config = requests.post(f"{admin}/config", json={"colour": 1}, timeout=10)
    assert config.status_code == 400 and "unknown settings" in config.json()["error"]
    assert requests.get(f"{admin}/health", timeout=10).json() == {"status": "ok"}
    estate.admin.clear_calls()
    assert estate.admin.calls() == {"calls": [], "counts": {}, "byStatus": {}, "total": 0}


# -- clients that go away ------------------------------------------------------------------------------
def reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a client killed mid-request does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_clients_that_vanish_leave_stderr_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    # In this process, so the listener's stderr is ours to read: EmulatorProcess pipes it and never
    # reads it, so every traceback there is a step towards threads blocked on a full pipe.
    with Emulator(scenario({"app-cmk": key(version("v1"))})) as running:
        running.admin.add_fault(host=VAULT_HOST, pathRegex="/keys/slow", latencyMs=300)
        proxy = ("127.0.0.1", running.port)
        for _ in range(5):  # reset in the middle of a plain request's body
            sock = socket.create_connection(proxy, timeout=10)
            sock.sendall(b"POST /faults HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            time.sleep(0.01)  # the listener (real sockets) reads the partial body before the reset
            reset(sock)
        context = ssl.create_default_context(cafile=running.env["REQUESTS_CA_BUNDLE"])
        for path in ("/keys/app-cmk", "/keys/slow"):  # mid-body on TLS; gone before a slow answer
            sock = socket.create_connection(proxy, timeout=10)
            sock.sendall(f"CONNECT {VAULT_HOST}:443 HTTP/1.1\r\nHost: {VAULT_HOST}:443\r\n\r\n".encode())
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
            tls = context.wrap_socket(sock, server_hostname=VAULT_HOST)
            length = 100 if path == "/keys/app-cmk" else 0
            tls.sendall(
                f"GET {path}?{KV_API} HTTP/1.1\r\nHost: {VAULT_HOST}\r\nContent-Length: {length}\r\n\r\n".encode()
            )
            time.sleep(0.01)  # as above: the listener reads part of the request first
            reset(tls)
        time.sleep(0.5)  # the listener thread writes the slow answer (300 ms) to a closed socket
        assert running.admin.health()
        assert running.admin.calls()["counts"] == {f"GET {VAULT_HOST}/keys/slow": 1}
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_body_cut_short_is_never_served(estate: Any, framing: str) -> None:
    # A client that ends its stream mid-body (TLS turns a reset into this) sent no request: the
    # emulator must neither answer nor record it, or a test's call counts carry a ghost.
    estate.admin.clear_calls()
    context = ssl.create_default_context(cafile=estate.env["REQUESTS_CA_BUNDLE"])
    sock, head = connect(estate, f"{VAULT_HOST}:443")
    assert head.startswith(b"HTTP/1.1 200")
    tls = context.wrap_socket(sock, server_hostname=VAULT_HOST)
    framing_header = "Content-Length: 100" if framing == "length" else "Transfer-Encoding: chunked"
    partial = b"{" if framing == "length" else b"64\r\n{"
    tls.sendall(
        f"PUT /keys/app-cmk?{KV_API} HTTP/1.1\r\nHost: {VAULT_HOST}\r\n{framing_header}\r\n\r\n".encode()
        + partial
    )
    tls.shutdown(socket.SHUT_WR)  # a clean end of stream: the short read is certain, not a race
    read_http_response(tls)  # (raw TLS records now) until the emulator closes: it has decided
    tls.close()
    assert estate.admin.calls()["counts"] == {}
