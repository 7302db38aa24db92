"""Every Key Vault and ARM request carries its own x-ms-client-request-id, a random (version 4)
UUID rather than azure-core's time-based one (libuuid's clock-file lock, ~70 µs a request)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.rest import HttpRequest

from rotation.azure.arm import Arm
from rotation.azure.requestid import HEADER, RandomRequestIdPolicy, random_id
from tests.unit.test_trust_links import Credential

ARM = "https://management.azure.com"


class Sent(Exception):
    """Raised in place of sending: the request as the pipeline made it."""


class Capture(SansIOHTTPPolicy[Any, Any]):
    def __init__(self) -> None:
        self.ids: list[str] = []

    def on_request(self, request: PipelineRequest[Any]) -> None:
        self.ids.append(request.http_request.headers[HEADER])
        raise Sent


def versions(ids: list[str]) -> set[int | None]:
    return {uuid.UUID(value).version for value in ids}


def test_arm_requests_carry_distinct_random_request_ids() -> None:
    capture = Capture()
    arm = Arm(Credential(), ARM, [f"{ARM}/.default"], transport=None, polling_interval=0, pacing=capture)  # type: ignore[arg-type]
    for _ in range(3):
        with pytest.raises(Sent):
            arm.get("/subscriptions/x/resourceGroups/rg", "2021-04-01")
    assert len(set(capture.ids)) == 3
    assert versions(capture.ids) == {4}


def test_a_random_id_is_a_canonical_version_4_uuid() -> None:
    ids = [random_id() for _ in range(2000)]
    parsed = [uuid.UUID(value) for value in ids]
    assert [str(each) for each in parsed] == ids  # canonical: lower case, hyphens in place
    assert {each.version for each in parsed} == {4} and {each.variant for each in parsed} == {uuid.RFC_4122}
    assert len(set(ids)) == len(ids)
    assert {value[19] for value in ids} == set("89ab")  # the variant's two random bits vary


def test_an_sdk_client_keeps_the_random_id_set_before_azure_cores_policy() -> None:
    """The Key Vault and Table clients take the policy as their first per-call policy
    (clients.py); azure-core's RequestIdPolicy after it leaves the header alone."""
    from azure.keyvault.keys import KeyClient

    capture = Capture()
    client = KeyClient(
        "https://contoso-cmk.vault.azure.net",
        Credential(),
        custom_hook_policy=capture,
        per_call_policies=[RandomRequestIdPolicy()],
        retry_total=0,
    )
    with pytest.raises(Sent):
        client.send_request(HttpRequest("GET", "https://contoso-cmk.vault.azure.net/keys/k/versions"))
    assert versions(capture.ids) == {4}


def test_a_request_id_given_for_one_call_still_wins() -> None:
    capture = Capture()
    arm = Arm(Credential(), ARM, [f"{ARM}/.default"], transport=None, polling_interval=0, pacing=capture)  # type: ignore[arg-type]
    with pytest.raises(Sent):
        arm._client.send_request(HttpRequest("GET", f"{ARM}/subscriptions"), request_id="mine")
    assert capture.ids == ["mine"]


def test_a_request_id_already_on_the_request_is_kept() -> None:
    capture = Capture()
    arm = Arm(Credential(), ARM, [f"{ARM}/.default"], transport=None, polling_interval=0, pacing=capture)  # type: ignore[arg-type]
    with pytest.raises(Sent):
        arm._client.send_request(HttpRequest("GET", f"{ARM}/subscriptions", headers={HEADER: "given"}))
    assert capture.ids == ["given"]


class CaptureAgent(Capture):
    def on_request(self, request: PipelineRequest[Any]) -> None:
        self.ids.append(request.http_request.headers["User-Agent"])
        raise Sent


def test_the_user_agent_adds_azure_http_user_agent_as_read_when_the_client_was_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_HTTP_USER_AGENT", "contoso-ops")
    capture = CaptureAgent()
    arm = Arm(Credential(), ARM, [f"{ARM}/.default"], transport=None, polling_interval=0, pacing=capture)  # type: ignore[arg-type]
    monkeypatch.delenv("AZURE_HTTP_USER_AGENT")  # not read again on every call
    with pytest.raises(Sent):
        arm.get("/subscriptions/x", "2021-04-01")
    assert capture.ids == ["cmk-rotation contoso-ops"]
