"""The emulator's Key Vault keys data plane, driven by the real azure-keyvault-keys KeyClient
through the HTTPS proxy with the real vault hostname (DESIGN.md section 5)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.keyvault.keys import (
    KeyClient,
    KeyRotationLifetimeAction,
    KeyRotationPolicy,
    KeyRotationPolicyAction,
    KeyType,
)

from tests.scenarios import VAULT, VAULT_HOST, key, scenario, version, vid
from tests.support.shapes import json_keys

pytestmark = pytest.mark.integration

VAULT_URL = f"https://{VAULT_HOST}"
PRIVATE_FIELDS = {"d", "p", "q", "dp", "dq", "qi", "k"}
DAY = 86400


class Bodies:
    """A raw_response_hook that keeps every response body the SDK received."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []

    def __call__(self, pipeline_response: Any) -> None:
        text = pipeline_response.http_response.text()
        self.bodies.append(json.loads(text) if text else None)


def client(vault_url: str = VAULT_URL, **kwargs: Any) -> KeyClient:
    return KeyClient(vault_url, DefaultAzureCredential(), **kwargs)


def vault_calls(stack: Any, host: str = VAULT_HOST) -> list[tuple[str, str, int]]:
    """(method, path without a trailing slash, status) of every call to one host, in order."""
    return [
        (c["method"], c["path"].rstrip("/"), c["status"])
        for c in stack.admin.calls()["calls"]
        if c["host"] == host
    ]


@pytest.fixture
def keys(stack: Any) -> Any:
    """A vault with one RSA key of three versions and a rotation policy with an expiry."""
    policy = {
        "lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}],
        "attributes": {"expiryTime": "P90D"},
    }
    stack.load(
        scenario(
            {
                "app-cmk": key(
                    version("v1", created="-300d"),
                    version("v2", created="-200d", exp="+165d", nbf="-200d"),
                    version("v3", created="-10d"),
                    policy=policy,
                ),
                "plain-cmk": key(version("p1", created="-5d")),
            }
        )
    )
    return stack


def test_create_rsa_rsa_hsm_and_ec_keys(keys: Any) -> None:
    kv = client()
    rsa = kv.create_rsa_key("made-rsa", size=3072, tags={"owner": "tests"})
    hsm = kv.create_rsa_key("made-hsm", hardware_protected=True)
    ec = kv.create_ec_key("made-ec", curve="P-384")

    # JsonWebKey sets its fields with setattr, so they are read from its __dict__ (typed Any)
    rsa_jwk, hsm_jwk, ec_jwk = vars(rsa.key), vars(hsm.key), vars(ec.key)
    assert rsa.key_type == KeyType.rsa
    assert len(rsa_jwk["n"]) == 3072 // 8
    assert rsa_jwk["e"] == b"\x01\x00\x01"
    assert rsa.properties.tags == {"owner": "tests"}
    assert rsa.id.startswith(f"{VAULT_URL}/keys/made-rsa/")
    assert len(rsa.properties.version or "") == 32
    assert hsm.key_type == KeyType.rsa_hsm
    assert len(hsm_jwk["n"]) == 2048 // 8
    assert ec.key_type == KeyType.ec
    assert ec_jwk["crv"] == "P-384"
    assert len(ec_jwk["x"]) == 48
    assert set(ec.key_operations) == {"sign", "verify"}
    assert "wrapKey" in rsa.key_operations and "unwrapKey" in rsa.key_operations

    state = keys.admin.state()["vaults"][VAULT]["keys"]
    assert state["made-hsm"]["kty"] == "RSA-HSM"
    assert state["made-ec"]["crv"] == "P-384"
    # A second create is a new version of the same key.
    again = kv.create_rsa_key("made-rsa", size=3072)
    assert again.properties.version != rsa.properties.version
    assert len(keys.admin.state()["vaults"][VAULT]["keys"]["made-rsa"]["versions"]) == 2


def test_get_latest_and_specific_version(keys: Any) -> None:
    kv = client()
    latest = kv.get_key("app-cmk")
    assert latest.properties.version == vid("v3")
    older = kv.get_key("app-cmk", vid("v2"))
    assert older.properties.version == vid("v2")
    assert older.id == f"{VAULT_URL}/keys/app-cmk/{vid('v2')}"
    assert older.properties.not_before is not None
    assert older.properties.expires_on is not None
    assert older.properties.expires_on > datetime.now(UTC) + timedelta(days=160)
    assert older.properties.recovery_level == "Recoverable"
    assert older.properties.enabled is True
    # Key names are case-insensitive in Key Vault.
    assert kv.get_key("APP-CMK").properties.version == vid("v3")


def test_list_versions_pages_with_next_link(keys: Any) -> None:
    keys.admin.configure(keyVaultPageSize=2)
    kv = client()
    kv.create_rsa_key("app-cmk")
    kv.create_rsa_key("app-cmk")  # five versions now
    keys.admin.clear_calls()

    versions = [p.version for p in kv.list_properties_of_key_versions("app-cmk")]

    assert len(versions) == 5
    assert set(versions) >= {vid("v1"), vid("v2"), vid("v3")}
    pages = [c for c in vault_calls(keys) if c[:2] == ("GET", "/keys/app-cmk/versions")]
    assert [status for *_, status in pages] == [200, 200, 200]
    # Keys are paged too.
    assert sorted(p.name for p in kv.list_properties_of_keys()) == ["app-cmk", "plain-cmk"]


def test_rotate_takes_expiry_from_the_rotation_policy(keys: Any) -> None:
    kv = client()
    rotated = kv.rotate_key("app-cmk")

    assert rotated.properties.version not in {vid("v1"), vid("v2"), vid("v3")}
    assert rotated.properties.expires_on and rotated.properties.created_on
    lifetime = rotated.properties.expires_on - rotated.properties.created_on
    assert lifetime == timedelta(days=90)
    assert kv.get_key("app-cmk").properties.version == rotated.properties.version
    assert rotated.key_operations == kv.get_key("app-cmk", vid("v3")).key_operations

    # Without an expiry in the policy, the new version has no expiry.
    plain = kv.rotate_key("plain-cmk")
    assert plain.properties.expires_on is None


def test_rotation_policy_get_and_put_appends_notify(keys: Any) -> None:
    kv = client()
    default = kv.get_key_rotation_policy("plain-cmk")
    assert [a.action for a in default.lifetime_actions] == [KeyRotationPolicyAction.notify]
    assert default.lifetime_actions[0].time_before_expiry == "P30D"

    stored = kv.get_key_rotation_policy("app-cmk")
    assert stored.expires_in == "P90D"

    rotate_only = KeyRotationPolicy(
        expires_in="P180D",
        lifetime_actions=[
            KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P150D")
        ],
    )
    updated = kv.update_key_rotation_policy("plain-cmk", rotate_only)

    actions = {a.action: a for a in updated.lifetime_actions}
    assert set(actions) == {KeyRotationPolicyAction.rotate, KeyRotationPolicyAction.notify}
    assert actions[KeyRotationPolicyAction.rotate].time_after_create == "P150D"
    assert actions[KeyRotationPolicyAction.notify].time_before_expiry == "P30D"
    assert updated.expires_in == "P180D"
    assert updated.id == f"{VAULT_URL}/keys/plain-cmk/rotationpolicy"
    again = kv.get_key_rotation_policy("plain-cmk")
    assert {a.action for a in again.lifetime_actions} == set(actions)
    assert again.created_on is not None and again.updated_on is not None
    # The policy now governs rotation.
    assert kv.rotate_key("plain-cmk").properties.expires_on is not None

    too_short = KeyRotationPolicy(expires_in="P7D", lifetime_actions=[])
    with pytest.raises(HttpResponseError) as refused:
        kv.update_key_rotation_policy("plain-cmk", too_short)
    assert refused.value.status_code == 400


def test_update_key_properties(keys: Any) -> None:
    kv = client()
    nbf = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    exp = nbf + timedelta(days=400)
    updated = kv.update_key_properties(
        "app-cmk", vid("v2"), enabled=False, not_before=nbf, expires_on=exp, tags={"stage": "retired"}
    )
    assert updated.properties.enabled is False
    assert updated.properties.not_before == nbf
    assert updated.properties.expires_on == exp
    assert updated.properties.tags == {"stage": "retired"}

    fetched = kv.get_key("app-cmk", vid("v2"))
    assert fetched.properties.enabled is False
    assert fetched.properties.tags == {"stage": "retired"}
    assert fetched.properties.updated_on and fetched.properties.created_on
    assert fetched.properties.updated_on >= fetched.properties.created_on
    stored = next(
        v
        for v in keys.admin.state()["vaults"][VAULT]["keys"]["app-cmk"]["versions"]
        if v["version"] == vid("v2")
    )
    assert (stored["enabled"], stored["nbf"], stored["exp"]) == (
        False,
        int(nbf.timestamp()),
        int(exp.timestamp()),
    )
    # Without a version, the latest version is updated; other versions are untouched.
    kv.update_key_properties("app-cmk", enabled=True, tags={"latest": "yes"})
    assert kv.get_key("app-cmk", vid("v3")).properties.tags == {"latest": "yes"}
    assert kv.get_key("app-cmk", vid("v2")).properties.enabled is False


def test_errors_surface_as_sdk_exceptions(keys: Any) -> None:
    kv = client()
    with pytest.raises(ResourceNotFoundError) as missing:
        kv.get_key("no-such-key")
    assert missing.value.error is not None
    assert missing.value.error.code == "KeyNotFound"
    assert "no-such-key" in missing.value.message
    with pytest.raises(ResourceNotFoundError):
        kv.get_key("app-cmk", "0" * 32)
    with pytest.raises(ResourceNotFoundError):
        kv.update_key_properties("no-such-key", enabled=False)
    with pytest.raises(ResourceNotFoundError):
        kv.get_key_rotation_policy("no-such-key")
    with pytest.raises(ResourceNotFoundError):
        kv.rotate_key("no-such-key")
    with pytest.raises(ResourceNotFoundError):
        list(kv.list_properties_of_key_versions("no-such-key"))
    now = datetime.now(UTC)
    with pytest.raises(HttpResponseError) as bad:
        kv.update_key_properties("app-cmk", not_before=now, expires_on=now - timedelta(days=1))
    assert bad.value.status_code == 400
    assert bad.value.error is not None
    assert bad.value.error.code == "BadParameter"


def test_no_private_key_material_in_any_response(keys: Any) -> None:
    bodies = Bodies()
    kv = client(raw_response_hook=bodies)
    kv.create_rsa_key("fresh-rsa", size=2048)
    kv.create_ec_key("fresh-ec")
    kv.create_rsa_key("fresh-hsm", hardware_protected=True)
    kv.get_key("app-cmk")
    kv.get_key("app-cmk", vid("v1"))
    kv.rotate_key("app-cmk")
    kv.update_key_properties("app-cmk", tags={"a": "b"})
    list(kv.list_properties_of_key_versions("app-cmk"))
    list(kv.list_properties_of_keys())

    key_bodies = [b for b in bodies.bodies if isinstance(b, dict) and "key" in b]
    assert len(key_bodies) >= 7
    assert all("n" in b["key"] or "x" in b["key"] for b in key_bodies)
    leaked = set().union(*(json_keys(b) for b in bodies.bodies)) & PRIVATE_FIELDS
    assert not leaked


def test_challenge_flow_one_401_then_200(stack: Any) -> None:
    # Challenges are cached per vault host for the whole process, so a vault no client has seen.
    vault = f"chal{uuid.uuid4().hex[:12]}"
    host = f"{vault}.vault.azure.net"
    stack.load(
        {
            "vaults": {vault: {"keys": {"k1": key(version("c1"))}}},
            "registries": [],
            "batchAccounts": [],
            "containerGroups": [],
        }
    )
    kv = client(f"https://{host}")
    assert kv.get_key("k1").properties.version == vid("c1")
    kv.get_key("k1", vid("c1"))
    kv.create_rsa_key("k2")

    assert vault_calls(stack, host) == [
        ("GET", "/keys/k1", 401),
        ("GET", "/keys/k1", 200),
        ("GET", f"/keys/k1/{vid('c1')}", 200),
        ("POST", "/keys/k2/create", 200),
    ]


class BogusCredential:
    """A TokenCredential whose tokens the vault never issued."""

    def __init__(self, token: str = "not-a-token-the-emulator-issued") -> None:
        self.token = token
        self.asked: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.asked.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def test_unknown_bearer_token_is_refused(keys: Any) -> None:
    bogus = BogusCredential()
    with pytest.raises(ClientAuthenticationError) as refused:
        KeyClient(VAULT_URL, bogus).get_key("app-cmk")
    assert refused.value.status_code == 401
    assert bogus.asked and all(s == ("https://vault.azure.net/.default",) for s in bogus.asked)
    statuses = [status for method, path, status in vault_calls(keys) if path == "/keys/app-cmk"]
    assert statuses and set(statuses) == {401}


def test_token_for_another_audience_is_refused(keys: Any) -> None:
    arm_token = ManagedIdentityCredential().get_token("https://management.azure.com/.default").token
    with pytest.raises(ClientAuthenticationError):
        KeyClient(VAULT_URL, BogusCredential(arm_token)).get_key("app-cmk")
    # The same vault answers a vault-audience token from the same identity endpoint.
    assert client().get_key("app-cmk").properties.version == vid("v3")


# -- faults, as the SDK's own retry policy sees them ------------------------------------------------
def warm_client(stack: Any, **kwargs: Any) -> KeyClient:
    """A client past the challenge (so the call log holds only the calls under test)."""
    kv = client(**kwargs)
    kv.get_key("app-cmk")
    stack.admin.clear_calls()
    return kv


def test_injected_429_is_retried_after_retry_after(keys: Any) -> None:
    kv = warm_client(keys)
    keys.admin.add_fault(
        method="GET", host=VAULT_HOST, pathRegex="/keys/app-cmk/?$", status=429, retryAfter=1, count=1
    )
    started = time.monotonic()
    found = kv.get_key("app-cmk")
    elapsed = time.monotonic() - started

    assert found.properties.version == vid("v3")
    assert elapsed >= 1.0
    assert vault_calls(keys) == [("GET", "/keys/app-cmk", 429), ("GET", "/keys/app-cmk", 200)]


def test_503_burst_within_and_beyond_the_sdk_retry_budget(keys: Any) -> None:
    kv = warm_client(keys, retry_backoff_factor=0.01)
    keys.admin.add_fault(method="GET", host=VAULT_HOST, status=503, count=3)
    assert kv.get_key("app-cmk").properties.version == vid("v3")
    assert [s for *_, s in vault_calls(keys)] == [503, 503, 503, 200]

    keys.admin.clear_calls()
    burst = keys.admin.add_fault(method="GET", host=VAULT_HOST, status=503, count=6)
    with pytest.raises(HttpResponseError) as exhausted:
        kv.get_key("app-cmk")
    assert exhausted.value.status_code == 503
    assert exhausted.value.error is not None
    assert exhausted.value.error.code == "ServiceUnavailable"
    assert [s for *_, s in vault_calls(keys)] == [503, 503, 503, 503]  # 1 try + 3 status retries
    assert next(f for f in keys.admin.faults() if f["id"] == burst)["count"] == 2


def test_dropped_connection_is_retried(keys: Any) -> None:
    kv = warm_client(keys)
    keys.admin.add_fault(method="GET", host=VAULT_HOST, pathRegex="/keys/app-cmk", drop=True, count=1)
    assert kv.get_key("app-cmk").properties.version == vid("v3")
    calls = [c for c in keys.admin.calls()["calls"] if c["host"] == VAULT_HOST]
    assert [(c["status"], c.get("dropped", False)) for c in calls] == [(0, True), (200, False)]


def test_latency_is_applied(keys: Any) -> None:
    kv = warm_client(keys)
    keys.admin.add_fault(host=VAULT_HOST, pathRegex="/keys/plain-cmk", latencyMs=1500)
    started = time.monotonic()
    kv.get_key("app-cmk")
    unaffected = time.monotonic() - started
    started = time.monotonic()
    kv.get_key("plain-cmk")
    delayed = time.monotonic() - started
    assert delayed >= 1.5  # a lower bound: sleeping is never shorter
    assert unaffected < delayed  # only the matching route is slowed (no tight upper bound)
    assert [s for *_, s in vault_calls(keys)] == [200, 200]


def test_faults_match_by_host_method_and_path_and_run_out(keys: Any) -> None:
    kv = warm_client(keys, retry_total=0)
    other_host = keys.admin.add_fault(host="management.azure.com", status=500, count=5)
    other_method = keys.admin.add_fault(method="PATCH", host=VAULT_HOST, status=500, count=5)
    other_path = keys.admin.add_fault(pathRegex="/keys/plain-cmk", status=500, count=5)
    assert kv.get_key("app-cmk").properties.version == vid("v3")

    twice = keys.admin.add_fault(
        method="get", host="*.vault.azure.net", pathRegex="app-cmk/?$", status=403, count=2
    )
    for _ in range(2):
        with pytest.raises(HttpResponseError) as refused:
            kv.get_key("app-cmk")
        assert refused.value.status_code == 403
    assert kv.get_key("app-cmk").properties.version == vid("v3")

    counts = {f["id"]: f["count"] for f in keys.admin.faults()}
    assert counts == {other_host: 5, other_method: 5, other_path: 5, twice: 0}
    assert [s for *_, s in vault_calls(keys)] == [200, 403, 403, 200]
    with pytest.raises(HttpResponseError):
        kv.get_key("plain-cmk")
    assert next(f for f in keys.admin.faults() if f["id"] == other_path)["count"] == 4


def test_clearing_faults_restores_service(keys: Any) -> None:
    kv = warm_client(keys, retry_total=0)
    keys.admin.add_fault(host=VAULT_HOST, status=403)  # every call, no count
    for _ in range(2):
        with pytest.raises(HttpResponseError):
            kv.get_key("app-cmk")
    keys.admin.clear_faults()
    assert keys.admin.faults() == []
    assert kv.get_key("app-cmk").properties.version == vid("v3")
    assert [s for *_, s in vault_calls(keys)] == [403, 403, 200]


def test_invalid_fault_is_refused(keys: Any) -> None:
    for bad in ({"status": 200}, {"count": 0}, {"lroResult": "Maybe"}, {"colour": "red"}, {"pathRegex": "("}):
        with pytest.raises(RuntimeError, match="400"):
            keys.admin.add_fault(**bad)
    assert keys.admin.faults() == []
