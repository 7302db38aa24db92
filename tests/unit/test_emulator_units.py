"""Unit tests of the emulator's pieces that are awkward to reach through the SDKs: ARM's
token-bucket arithmetic (with a controlled clock), fault matching, scenario parsing and the
checks a resource provider makes on a key."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from emulator import faults, scenario
from emulator.app import EmulatorApp
from emulator.arm import key_problem, latest_version_url
from emulator.faults import ARM_BUCKETS, ArmThrottle, CallLog, FaultBook
from emulator.http import Request, Response, Router
from emulator.identity import TokenIssuer
from emulator.keyvault import iso_duration_seconds
from emulator.settings import Settings
from emulator.state import World
from tests.scenarios import key, key_id, registry, version, vid
from tests.scenarios import scenario as build_scenario

SAMPLE = Path(__file__).resolve().parents[2] / "emulator" / "scenarios" / "sample.json"
SUB = "00000000-0000-0000-0000-00000000000a"
CALLER = "caller-1"


class Clock:
    """Stands in for the `time` module inside emulator.faults."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(faults, "time", fake)
    return fake


@pytest.fixture
def throttle(clock: Clock) -> ArmThrottle:
    limiter = ArmThrottle()
    limiter.set_enabled(True)
    return limiter


# -- ARM throttling model ---------------------------------------------------------------------------
def test_documented_bucket_sizes() -> None:
    assert ARM_BUCKETS == {"reads": (250, 25.0), "writes": (200, 10.0), "deletes": (200, 10.0)}


def test_disabled_throttle_allows_everything_and_reports_a_full_bucket(clock: Clock) -> None:
    limiter = ArmThrottle()
    for _ in range(500):  # ARM always reports the budget; with throttling off it never drains
        assert limiter.take(SUB, CALLER, "PATCH") == (
            True,
            {"x-ms-ratelimit-remaining-subscription-writes": "199"},
            0,
        )
    assert limiter.take(SUB, CALLER, "GET")[1] == {"x-ms-ratelimit-remaining-subscription-reads": "249"}
    assert limiter.throttled == 0


def test_write_bucket_drains_after_200_and_answers_retry_after(throttle: ArmThrottle, clock: Clock) -> None:
    header = "x-ms-ratelimit-remaining-subscription-writes"
    remaining = []
    for _ in range(200):
        allowed, headers, _ = throttle.take(SUB, CALLER, "PATCH")
        assert allowed
        remaining.append(int(headers[header]))
    assert remaining == list(range(199, -1, -1))

    allowed, headers, retry_after = throttle.take(SUB, CALLER, "PUT")
    assert (allowed, headers[header], retry_after) == (False, "0", 1)  # next token in 0.1 s: whole seconds
    assert throttle.throttled == 1

    clock.advance(0.35)  # 3.5 tokens at 10 a second
    assert [throttle.take(SUB, CALLER, "POST")[0] for _ in range(4)] == [True, True, True, False]

    clock.advance(10_000)  # refills up to the bucket size, no further
    allowed, headers, _ = throttle.take(SUB, CALLER, "PATCH")
    assert allowed and headers[header] == "199"


def test_retry_after_is_the_wait_for_the_next_token_rounded_up(clock: Clock) -> None:
    bucket = faults._Bucket(1, 0.25)
    assert bucket.take() == (True, 0, 0.0)
    assert bucket.take() == (False, 0, 4.0)
    clock.advance(2.5)
    allowed, _, wait = bucket.take()
    assert not allowed and wait == pytest.approx(1.5)
    clock.advance(1.5)
    assert bucket.take()[0]


def test_buckets_are_per_subscription_caller_and_kind(throttle: ArmThrottle) -> None:
    for _ in range(200):
        throttle.take(SUB, CALLER, "PATCH")
    assert not throttle.take(SUB, CALLER, "PATCH")[0]
    assert throttle.take("other-sub", CALLER, "PATCH")[0]
    assert throttle.take(SUB, "other-caller", "PATCH")[0]
    allowed, headers, _ = throttle.take(SUB, CALLER, "GET")
    assert allowed and headers == {"x-ms-ratelimit-remaining-subscription-reads": "249"}
    allowed, headers, _ = throttle.take(SUB, CALLER, "DELETE")
    assert allowed and headers == {"x-ms-ratelimit-remaining-subscription-deletes": "199"}
    assert ArmThrottle.kind("HEAD") == "reads"
    assert ArmThrottle.kind("POST") == "writes"


def test_re_enabling_refills_the_buckets(throttle: ArmThrottle) -> None:
    for _ in range(201):
        throttle.take(SUB, CALLER, "PATCH")
    throttle.set_enabled(False)
    throttle.set_enabled(True)
    allowed, headers, _ = throttle.take(SUB, CALLER, "PATCH")
    assert allowed and headers["x-ms-ratelimit-remaining-subscription-writes"] == "199"


# -- faults and the call log ------------------------------------------------------------------------
def test_fault_matching_by_method_host_glob_and_path() -> None:
    book = FaultBook()
    book.add({"method": "patch", "host": "*.vault.azure.net", "pathRegex": "/KEYS/k1", "status": 503})
    assert book.take("GET", "contoso-cmk.vault.azure.net", "/keys/k1").status is None
    assert book.take("PATCH", "management.azure.com", "/keys/k1").status is None
    assert book.take("PATCH", "contoso-cmk.vault.azure.net", "/keys/k2").status is None
    assert book.take("PATCH", "contoso-cmk.vault.azure.net", "/keys/k1/abc").status == 503


def test_fault_count_runs_out_and_effects_combine() -> None:
    book = FaultBook()
    first = book.add({"status": 429, "retryAfter": 2, "count": 2, "latencyMs": 100})
    second = book.add({"status": 500, "latencyMs": 50, "lroResult": "Failed"})
    effect = book.take("GET", "h", "/p")
    assert (effect.status, effect.retry_after, effect.lro_result) == (429, "2", "Failed")
    assert effect.latency_s == pytest.approx(0.15)
    assert effect.fault_ids == [first, second]
    book.take("GET", "h", "/p")
    third = book.take("GET", "h", "/p")
    assert (third.status, third.retry_after, third.fault_ids) == (500, None, [second])
    assert [f["count"] for f in book.list()] == [0, None]
    book.clear()
    assert book.list() == []
    assert book.take("GET", "h", "/p").status is None


def test_drop_wins_over_a_later_status() -> None:
    book = FaultBook()
    book.add({"drop": True, "count": 1})
    book.add({"status": 503, "count": 1})
    effect = book.take("GET", "h", "/")
    assert effect.drop and effect.status is None
    # Both were consumed by the one call.
    assert book.take("GET", "h", "/").fault_ids == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"status": 200}, "status"),
        ({"status": "503"}, "status"),
        ({"count": 0}, "count"),
        ({"lroResult": "Done"}, "lroResult"),
        ({"statusCode": 500}, "unknown fault fields"),
        ({"headers": {"Retry-After": 5}}, "headers"),
        ({"nextLink": 7}, "nextLink"),
        ({"dripMs": -1}, "dripMs"),
        ({"bodyBytes": "big"}, "bodyBytes"),
    ],
)
def test_invalid_faults_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultBook().add(spec)


def test_a_fault_reshapes_the_answer() -> None:
    from emulator.app import shaped

    book = FaultBook()
    book.add({"headers": {"azure-asyncoperation": None, "Location": "https://evil.test/op"}, "nextLink": "x"})
    book.add({"headers": {"Location": "ignored"}, "dripMs": 20, "count": 1})
    effect = book.take("PATCH", "h", "/p")
    answer = Response.json(201, {"value": []}, {"Azure-AsyncOperation": "https://h/op"})
    answer = shaped(answer, effect)
    assert "Azure-AsyncOperation" not in answer.headers
    assert answer.headers["Location"] == "https://evil.test/op"  # the first fault wins
    assert json.loads(answer.body)["nextLink"] == "x" and answer.drip_s == 0.02
    large = FaultBook()
    large.add({"bodyBytes": 200_000})
    streamed = shaped(Response.json(200, {}), large.take("GET", "h", "/"))
    assert streamed.chunks is not None and sum(len(c) for c in streamed.chunks) == 200_000


def test_call_log_counts() -> None:
    log = CallLog()
    log.record("GET", "h", "/a", 200)
    log.record("GET", "h", "/a", 429)
    log.record("PATCH", "h", "/b", 0, dropped=True)
    snapshot = log.snapshot()
    assert snapshot["total"] == 3
    assert snapshot["counts"] == {"GET h/a": 2, "PATCH h/b": 1}
    assert snapshot["byStatus"] == {"200": 1, "429": 1, "0": 1}
    assert snapshot["calls"][2]["dropped"] is True
    log.clear()
    assert log.snapshot()["total"] == 0


# -- scenario format ---------------------------------------------------------------------------------
def test_times_are_epoch_seconds_or_offsets_from_load_time() -> None:
    base = 1_800_000_000
    assert scenario.parse_time("-40d", "t", base=base) == base - 40 * 86400
    assert scenario.parse_time("+325d", "t", base=base) == base + 325 * 86400
    assert scenario.parse_time("+2h", "t", base=base) == base + 7200
    assert scenario.parse_time("-30m", "t", base=base) == base - 1800
    assert scenario.parse_time("+1.5d", "t", base=base) == base + 129600
    assert scenario.parse_time(1790000000, "t") == 1790000000
    assert scenario.parse_time("1790000000", "t") == 1790000000
    assert scenario.parse_time(None, "t") is None
    for bad in ("40d", "-40y", "soon", True):
        with pytest.raises(scenario.ScenarioError, match=r"versions\[0\]\.exp"):
            scenario.parse_time(bad, "versions[0].exp")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda s: s["vaults"]["contoso-cmk"]["keys"]["k"]["versions"][0].update(version="xyz"),
            "versions[0].version",
        ),
        (lambda s: s["vaults"]["contoso-cmk"]["keys"]["k"].update(kty="AES"), "keys['k'].kty"),
        (lambda s: s["vaults"]["contoso-cmk"]["keys"]["k"].update(versions=[]), "keys['k'].versions"),
        (
            lambda s: s["vaults"]["contoso-cmk"]["keys"]["k"]["versions"][0].update(exp="later"),
            "versions[0].exp",
        ),
        (lambda s: s["registries"][0].update(id="/subscriptions/x/resourceGroups/y"), "registries[0].id"),
        (lambda s: s["registries"][0].pop("id"), "registries[0]: 'id' is required"),
        (lambda s: s.update(storage={}), "unknown top-level fields ['storage']"),
        (lambda s: s["vaults"].update({"x": {}}), "vaults['x']"),
    ],
)
def test_invalid_scenario_names_the_field(mutate: Any, field: str) -> None:
    good = build_scenario({"k": key(version("v1"))}, registries=[registry("reg1", key_id("k", vid("v1")))])
    bad = copy.deepcopy(good)
    mutate(bad)
    world = World()
    scenario.load(world, good)
    with pytest.raises(scenario.ScenarioError) as error:
        scenario.load(world, bad)
    assert field in str(error.value)
    # Validation happens before anything changes.
    assert list(world.vaults["contoso-cmk"].keys) == ["k"]
    assert len(world.registries) == 1


def test_sample_scenario_round_trips_through_dump() -> None:
    world = World()
    scenario.load(world, json.loads(SAMPLE.read_text()))
    dumped = scenario.dump(world)
    again = World()
    scenario.load(again, dumped)
    assert scenario.dump(again) == dumped
    assert len(dumped["registries"]) == 7 and len(dumped["containerGroups"]) == 2
    # Secure values survive in the admin state (the ARM GET strips them, the state must not).
    invoice = next(g for g in dumped["containerGroups"] if g["id"].endswith("/invoice-sync"))
    assert invoice["secureEnvironment"] is True


# -- Key Vault and resource-provider rules ---------------------------------------------------------
def test_iso_durations() -> None:
    assert iso_duration_seconds("P90D") == 90 * 86400
    assert iso_duration_seconds("P1Y") == 365 * 86400
    assert iso_duration_seconds("P1Y6M") == (365 + 180) * 86400
    assert iso_duration_seconds("P2W") == 14 * 86400
    for bad in ("P", "90D", "PT1H", ""):
        with pytest.raises(ValueError, match="not an ISO 8601 duration"):
            iso_duration_seconds(bad)


def test_key_problem_explains_what_a_resource_provider_refuses() -> None:
    world = World()
    scenario.load(
        world,
        build_scenario(
            {
                "k": key(
                    version("good", created="-10d"),
                    version("off", created="-20d", enabled=False),
                    version("old", created="-400d", exp="-1d"),
                    version("soon", created="-30d", nbf="+1d"),
                ),
                "ec": key(version("e"), kty="EC"),
                "signing": key(version("s"), ops=["sign", "verify"]),
                "hsm": key(version("h"), kty="RSA-HSM"),
            }
        ),
    )
    assert key_problem(world, key_id("k", vid("good"))) is None
    assert key_problem(world, key_id("k")) is None
    assert key_problem(world, key_id("hsm", vid("h"))) is None
    assert "A key version is required" in (key_problem(world, key_id("k"), need_version=True) or "")
    assert "disabled" in (key_problem(world, key_id("k", vid("off"))) or "")
    assert "expired" in (key_problem(world, key_id("k", vid("old"))) or "")
    assert "not yet valid" in (key_problem(world, key_id("k", vid("soon"))) or "")
    assert "only RSA and RSA-HSM" in (key_problem(world, key_id("ec", vid("e"))) or "")
    assert "does not permit" in (key_problem(world, key_id("signing", vid("s"))) or "")
    assert "was not found" in (key_problem(world, key_id("k", "0" * 32)) or "")
    assert "was not found" in (key_problem(world, key_id("k", vid("good"), vault="other-vault")) or "")
    assert "not a valid Key Vault key identifier" in (key_problem(world, "https://example.com/k") or "")
    assert latest_version_url(world, key_id("k")) == key_id("k", vid("good"))
    assert latest_version_url(world, key_id("k", vid("old"))) == key_id("k", vid("old"))


# -- settings, routing, identity --------------------------------------------------------------------
def test_settings_validate_and_describe() -> None:
    settings = Settings()
    settings.update({"armPageSize": 2, "lroSeconds": 0.05, "retryAfter": 0})
    assert settings.describe() == {
        "lroSeconds": 0.05,
        "retryAfter": 0,
        "armPageSize": 2,
        "keyVaultPageSize": 25,
        "eventGridTimeScale": 1.0,
        "listsAlsoAnswer": [],
        "lroShapes": {},
    }
    settings.update({"lroShapes": {"Microsoft.Compute": "location202"}})
    assert settings.describe()["lroShapes"] == {"microsoft.compute": "location202"}
    with pytest.raises(ValueError, match="lroShapes"):
        settings.update({"lroShapes": {"Microsoft.Compute": "sometimes"}})
    settings.update({"listsAlsoAnswer": ["00000000-0000-0000-0000-00000000000C"]})
    assert settings.describe()["listsAlsoAnswer"] == ["00000000-0000-0000-0000-00000000000c"]
    with pytest.raises(ValueError, match="listsAlsoAnswer"):
        settings.update({"listsAlsoAnswer": "00000000-0000-0000-0000-00000000000c"})
    with pytest.raises(ValueError, match="unknown settings"):
        settings.update({"pageSize": 3})
    with pytest.raises(ValueError, match="positive"):
        settings.update({"keyVaultPageSize": 0})


def request(
    method: str, target: str, headers: dict[str, str] | None = None, host: str = "127.0.0.1"
) -> Request:
    return Request.parse(method, target, host, headers or {}, b"", "http")


def test_router_matches_full_paths_and_answers_405_for_other_methods() -> None:
    router = Router()
    router.add("GET", r"/keys/(?P<name>[^/]+)", lambda r, name: Response.json(200, {"name": name}))
    found, refused = (
        router.dispatch(request("GET", "/keys/k1?x=1")),
        router.dispatch(request("DELETE", "/keys/k1")),
    )
    assert found is not None and refused is not None
    assert json.loads(found.body) == {"name": "k1"}
    assert refused.status == 405
    assert router.dispatch(request("GET", "/keys/k1/extra")) is None


def test_identity_endpoint_checks_the_secret_and_tokens_their_audience() -> None:
    issuer = TokenIssuer("s3cret")
    target = "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net"
    assert issuer.handle(request("GET", target, {"X-IDENTITY-HEADER": "wrong"})).status == 401
    assert issuer.handle(request("GET", target)).status == 401
    assert (
        issuer.handle(
            request("GET", "/msi/token?api-version=2017-09-01&resource=x", {"X-IDENTITY-HEADER": "s3cret"})
        ).status
        == 400
    )
    answer = issuer.handle(request("GET", target + "&client_id=ABC", {"X-IDENTITY-HEADER": "s3cret"}))
    body = json.loads(answer.body)
    assert (
        answer.status == 200
        and body["token_type"] == "Bearer"
        and body["resource"] == "https://vault.azure.net"
    )
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    token = issuer.check(request("GET", "/", bearer), {"https://vault.azure.net"})
    assert token is not None and token.caller == "abc"
    assert issuer.check(request("GET", "/", bearer), {"https://management.azure.com"}) is None
    assert (
        issuer.check(request("GET", "/", {"Authorization": "Bearer nope"}), {"https://vault.azure.net"})
        is None
    )


def test_app_answers_key_vault_challenge_without_a_token() -> None:
    app = EmulatorApp()
    scenario.load(app.world, build_scenario({"k": key(version("v1"))}))
    plain = Request.parse(
        "GET", "/keys/k?api-version=2025-07-01", "contoso-cmk.vault.azure.net", {}, b"", "https"
    )
    answer = app.handle(plain)
    assert answer.status == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer authorization="https://login.microsoftonline.com/')
    assert 'resource="https://vault.azure.net"' in challenge
    assert app.calls.snapshot()["byStatus"] == {"401": 1}
    assert app.resolves("contoso-cmk.vault.azure.net")
    assert not app.resolves("nosuch-vault.vault.azure.net")
    assert app.intercepts("management.azure.com") and not app.intercepts("pypi.org")


def test_a_workspace_entry_s_key_id_goes_to_the_entities_it_names_and_survives_a_dump() -> None:
    base = "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/"
    key, other = (
        "https://contoso-cmk.vault.azure.net/keys/k/" + "a" * 32,
        "https://contoso-cmk.vault.azure.net/keys/o",
    )
    entries = [
        {"id": base + "all", "keyId": key},
        {
            "id": base + "two",
            "keyId": key,
            "entities": ["managedServices", "dbfsRoot"],
            "managedDiskKeyId": other,
        },
    ]
    world = World()
    scenario.load(world, {"databricksWorkspaces": entries})
    dumped = scenario.dump(world)
    held = {w["id"].rsplit("/", 1)[1]: w for w in dumped["databricksWorkspaces"]}
    assert [held["all"][f] for f in ("managedServicesKeyId", "managedDiskKeyId", "dbfsKeyId")] == [key] * 3
    assert [held["two"][f] for f in ("managedServicesKeyId", "managedDiskKeyId", "dbfsKeyId")] == [
        key,
        other,
        key,
    ]
    again = World()
    scenario.load(again, dumped)
    assert scenario.dump(again) == dumped
