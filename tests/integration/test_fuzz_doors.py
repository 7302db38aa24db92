"""Hostile inputs at every door (issue 17, section 3): each listed shape has a test, and a
bounded hypothesis suite throws their families (deep nesting, unicode digits, extreme dates,
oversized fields, non-object principals) at the routes, the queue function and the Event Grid
function. A door answers with a code and a sentence and audits the refusal; it never raises
past its entry point (the queue function raises only to have a run retried) and never answers
500, which would mean the catch-all hid a bug."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import function_app
from devstack.functions_host import deliver_event_grid, event_grid_events
from rotation.doors import intake
from rotation.doors.web import ApiRequest, roles_of
from rotation.doors.worker import RunFailed
from tests import scenarios as s
from tests.support.http import call

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
FUZZ = settings(
    max_examples=40,
    deadline=None,  # Azurite round trips vary with the machine's load; the count bounds the time
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
ROUTES = {
    "plan": (function_app.plan_rotation, "POST", "/api/rotations/plan"),
    "start": (function_app.start_rotation, "POST", "/api/rotations"),
    "replay": (function_app.replay_failed, "POST", "/api/replay"),
}
ANSWERS = {200, 202, 400, 403, 404, 409, 413, 502, 503}


def rejections(stack) -> list[dict[str, Any]]:
    records, _ = stack.service().audit.query(top=1000)
    return [r for r in records if r["kind"] == "input-rejected"]


def answered(status: int, body: Any) -> None:
    assert status in ANSWERS, (status, body)
    if status >= 400:
        error = body["error"]
        assert error["code"] and error["message"] and "Traceback" not in error["message"]


def poison_kept(stack) -> int:
    queue = QueueClient.from_connection_string(stack.storage, "rotation-requests-poison")
    blobs = ContainerClient.from_connection_string(stack.storage, "rotation-poison")
    return len(queue.peek_messages(max_messages=32)) + len(list(blobs.list_blobs()))


# -- each listed input ---------------------------------------------------------------------------
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_deeply_nested_bodies_are_refused_and_audited(stack, route: str) -> None:
    function, method, path = ROUTES[route]
    status, body, _ = call(function, method, path, b"[" * 30000)
    assert status == 400 and body["error"]["code"] == "InvalidJson"
    assert [r["reason"] for r in rejections(stack)] == ["InvalidJson"]


@pytest.mark.parametrize("top", ["\u00b2", "\u0663", "1\u00b2", "-1", "1e3"])
def test_unicode_and_odd_digits_in_top_are_refused(stack, top: str) -> None:
    status, body, _ = call(function_app.list_audit, "GET", "/api/audit", query={"top": top})
    assert status == 400 and body["error"]["code"] == "InvalidTop"


def test_a_unicode_content_length_does_not_escape(stack) -> None:
    key = s.key_id("acr-cmk")
    status, body, _ = call(
        function_app.plan_rotation,
        "POST",
        "/api/rotations/plan",
        json.dumps({"keyId": key}).encode(),
        headers={"Content-Length": "²"},
    )
    answered(status, body)  # the declared length is ignored; the body is what counts


@pytest.mark.parametrize(
    "query",
    [
        {"until": "0001-01-01T00:00:00+05:00"},
        {"since": "0001-01-01T00:00:00Z", "until": "0001-01-05T00:00:00Z"},
        {"since": "9999-12-31T23:59:59-05:00"},
        {"until": "9999-12-31T23:59:59.999999+00:00"},
    ],
)
def test_extreme_dates_are_refused_in_our_words(stack, query: dict[str, str]) -> None:
    status, body, _ = call(function_app.list_audit, "GET", "/api/audit", query=query)
    assert status == 400 and body["error"]["code"] == "InvalidTime"
    assert "strptime" not in body["error"]["message"] and "%Y" not in body["error"]["message"]


def test_a_deeply_nested_queue_message_goes_to_poison_at_once(stack) -> None:
    stack.service()
    assert function_app.run_rotation(func.QueueMessage(id="deep", body=b"[" * 40000)) is None
    assert poison_kept(stack) == 1
    [record] = rejections(stack)
    assert record["source"] == "queue" and record["detail"]["messageId"] == "deep"


def test_an_oversized_event_id_goes_to_poison_at_once(stack) -> None:
    stack.service()
    message = {
        "schema": 1,
        "requestId": "5b1c6f1e-2a43-4f2b-9f0e-0c1d2e3f4a5b",
        "source": "event",
        "keyId": s.key_id("acr-cmk"),
        "eventId": "e" * 100_000,
        "eventType": "Microsoft.KeyVault.KeyNewVersionCreated",
        "eventVersion": None,
        "actor": "eventgrid",
        "dryRun": False,
        "targets": None,
        "enqueuedAt": "2026-11-20T00:00:00Z",
        "leaseWaits": 0,
    }
    assert function_app.run_rotation(func.QueueMessage(id="big", body=json.dumps(message).encode())) is None
    assert poison_kept(stack) == 1  # too large for a queue message: archived as a blob
    [record] = rejections(stack)
    assert "eventId" in record["message"] and record["detail"]["bytes"] > 100_000


@pytest.mark.parametrize("principal", [[{"typ": "roles", "val": "Rotation.Execute"}], "roles", 7, None, True])
def test_non_object_principals_have_no_roles(principal: Any) -> None:
    header = base64.b64encode(json.dumps(principal).encode()).decode()
    assert roles_of(ApiRequest("GET", "/", {"X-MS-CLIENT-PRINCIPAL": header})) == set()


def test_non_object_principal_is_refused_as_missing_role(stack) -> None:
    stack.set(WEBSITE_AUTH_ENABLED="True")
    header = base64.b64encode(json.dumps(["Rotation.Execute"]).encode()).decode()
    status, body, _ = call(
        function_app.start_rotation,
        "POST",
        "/api/rotations",
        json.dumps({"keyId": s.key_id("acr-cmk")}).encode(),
        headers={"X-MS-CLIENT-PRINCIPAL": header},
    )
    assert status == 403 and body["error"]["code"] == "MissingRole"
    assert [r["reason"] for r in rejections(stack)] == ["MissingRole"]


def test_replay_refused_for_too_many_items_writes_nothing(stack) -> None:
    service = stack.service()
    sample = json.loads((SAMPLES / "deadletter-blob.eventgrid.json").read_text())
    events = [{**sample[0], "id": f"00000000-0000-4000-8000-{n:012d}"} for n in range(501)]
    dead = ContainerClient.from_connection_string(stack.storage, "eventgrid-deadletters")
    dead.upload_blob("contoso-cmk/KEYS/2026/11/19/22/many.json", json.dumps(events).encode())
    poison = service.poison_queue
    for n in range(3):
        poison.send_message(f"not a request {n}")
    status, body, _ = call(function_app.replay_failed, "POST", "/api/replay", b"{}")
    assert status == 400 and body["error"]["code"] == "TooManyItems"
    assert len(QueueClient.from_connection_string(stack.storage, poison.queue_name).peek_messages(32)) == 3
    assert list(ContainerClient.from_connection_string(stack.storage, "rotation-poison").list_blobs()) == []
    assert "poison-moved" not in {r["kind"] for r in stack.service().audit.query(top=100)[0]}


# -- the families, fuzzed ------------------------------------------------------------------------
nesting = st.integers(min_value=1, max_value=60000).map(lambda n: "[" * n)
# str.isdigit() is true for all of these but the ASCII ones: superscripts, Arabic-Indic, NKo,
# circled, Tamil and mathematical digits.
_DIGITS = "\u00b2\u00b3\u00b9\u0663\u07c1\u2460\u0be7\U0001d7d9\u0660"
unicode_digits = st.sampled_from([*_DIGITS, "1\u00b2", "\u0660\u0660", "", " 5", "05"])
extreme_dates = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-14:00", "0001-01-01", "9999-12-31"]),
    st.builds(
        lambda y, tz: f"{y:04d}-01-01T00:00:00{tz}",
        st.integers(1, 9999),
        st.sampled_from(["Z", "+23:59", "-23:59", ""]),
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
oversized = st.integers(min_value=1000, max_value=120_000).map(lambda n: "x" * n)
field_values = st.one_of(json_values, oversized, unicode_digits, extreme_dates, nesting)
bodies = st.one_of(
    nesting.map(str.encode),
    st.binary(max_size=200),
    st.dictionaries(
        st.sampled_from(["keyId", "targets", "dryRun", "since", "until", "eventIds", "key", "other"]),
        field_values,
        max_size=4,
    ).map(lambda d: json.dumps(d).encode()),
)
principals = st.one_of(json_values, nesting).map(
    lambda v: base64.b64encode((v if isinstance(v, str) else json.dumps(v)).encode()).decode()
)


@FUZZ
@given(route=st.sampled_from(sorted(ROUTES)), body=bodies, length=unicode_digits, principal=principals)
def test_fuzzed_bodies_and_headers_never_escape(
    stack, route: str, body: bytes, length: str, principal: str
) -> None:
    stack.set(WEBSITE_AUTH_ENABLED="True")
    function, method, path = ROUTES[route]
    headers = {"Content-Length": length, "X-MS-CLIENT-PRINCIPAL": principal}
    answered(*call(function, method, path, body, headers=headers)[:2])


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(["top", "since", "until", "continuation", "key", "target", "run"]),
        st.one_of(unicode_digits, extreme_dates, st.text(max_size=40), nesting.map(lambda t: t[:2000])),
        max_size=4,
    )
)
def test_fuzzed_audit_queries_never_escape(stack, query: dict[str, str]) -> None:
    answered(*call(function_app.list_audit, "GET", "/api/audit", query=query)[:2])


@FUZZ
@given(
    token=st.one_of(json_values, nesting).map(
        lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode()
    )
)
def test_fuzzed_continuation_tokens_never_escape(stack, token: str) -> None:
    answered(*call(function_app.list_audit, "GET", "/api/audit", query={"continuation": token})[:2])


message_fields = st.fixed_dictionaries(
    {
        "schema": st.one_of(st.just(1), json_values),
        "requestId": st.one_of(st.uuids().map(str), field_values),
        "source": st.one_of(st.sampled_from(["event", "http"]), field_values),
        "keyId": st.one_of(st.just(s.key_id("acr-cmk")), field_values),
        "eventId": field_values,
        "actor": st.one_of(st.just("pytest"), field_values),
        "dryRun": st.one_of(st.just(True), field_values),
        "targets": st.one_of(st.none(), field_values),
        "leaseWaits": st.one_of(st.just(0), field_values),
    }
)


@FUZZ
@given(body=st.one_of(nesting, st.text(max_size=200), message_fields.map(json.dumps)))
def test_fuzzed_queue_messages_never_escape(stack, body: str) -> None:
    stack.service()
    with contextlib.suppress(RunFailed):  # a request whose run failed: the host retries it
        function_app.run_rotation(func.QueueMessage(id="fuzz", body=body.encode()))


event_shapes = st.fixed_dictionaries(
    {
        "id": st.one_of(st.uuids().map(str), st.text(max_size=30), oversized),
        "subject": st.one_of(st.just("acr-cmk"), field_values),
        "eventType": st.one_of(st.just("Microsoft.KeyVault.KeyNewVersionCreated"), st.text(max_size=40)),
        "eventTime": st.one_of(extreme_dates, st.text(max_size=30)),
        "dataVersion": st.just("1"),
        "topic": st.one_of(
            st.text(max_size=40), st.just("/subscriptions/x/providers/Microsoft.KeyVault/vaults/v")
        ),
        "data": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "Id": field_values,
                    "VaultName": field_values,
                    "ObjectName": field_values,
                    "Version": field_values,
                }
            ),
        ),
    }
)


@FUZZ
@given(event=event_shapes)
def test_fuzzed_events_are_rejected_not_raised(stack, event: dict[str, Any]) -> None:
    try:
        event_grid_events([event])
    except Exception:
        return
    assert deliver_event_grid(function_app.on_key_event, [event]) == [None]


def test_an_event_the_parser_cannot_read_at_all_is_rejected_and_audited(stack) -> None:
    assert intake.handle_event(stack.service(), object()) is None  # acknowledged: retrying cannot help
    [record] = rejections(stack)
    assert record["reason"] == "unparseable" and "AttributeError" in record["message"]
