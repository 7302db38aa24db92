"""Issue 21 item 5: one resource's data must not fail the whole key. A consumer tagged
`cmk-rotation-wave=²` (str.isdigit() passes it, int() cannot read it) used to make plan and
inventory answer 500, the CLI exit 1 and every run of the key fail and be poisoned. Now it goes
to the last wave with a plan warning, and the others go on, at every door. A resource whose
data trips its kind while listing is reported where it was found; the others are still read."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import azure.functions as func
import pytest

import function_app
from devstack.functions_host import http_request
from rotation.azure.kinds.registry import Registries
from rotation.model.consumer import Consumer
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.run.reconcile import Reconciler
from rotation.storage.queue import to_message
from tests import scenarios as s
from tests.integration.cli_support import run

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
ODD = "\u00b2"


def estate(stack, odd_tags: Mapping[str, str] | None = None) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
            registries=[
                s.registry("first", s.key_id("acr-cmk", OLD), tags={"cmk-rotation-wave": "0"}),
                s.registry(
                    "odd", s.key_id("acr-cmk", OLD), tags=dict(odd_tags or {"cmk-rotation-wave": ODD})
                ),
                s.registry("plain", s.key_id("acr-cmk", OLD)),
            ],
        )
    )


def _steps(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["target"].rsplit("/", 1)[1]: step for step in plan["steps"]}


def _odd_warned(warnings: list[str]) -> bool:
    return any("odd" in w and "last wave" in w for w in warnings)


def test_http_plan_puts_the_odd_tag_last_with_a_warning(stack) -> None:
    estate(stack)
    body = json.dumps({"keyId": s.key_id("acr-cmk")}).encode()
    response = function_app.plan_rotation(http_request("POST", "/api/rotations/plan", body=body))
    assert response.status_code == 200, response.get_body()
    plan = json.loads(response.get_body())
    steps = _steps(plan)
    assert {n: (st["action"], st["wave"]) for n, st in steps.items()} == {
        "first": ("update", "0"),
        "odd": ("update", "last"),
        "plain": ("update", "last"),
    }
    assert _odd_warned(plan["warnings"])


@pytest.mark.parametrize("output", ["table", "json"])
def test_cli_plan_and_inventory_answer(stack, output: str) -> None:
    estate(stack)
    planned = run("-o", output, "plan", s.key_id("acr-cmk"))
    assert planned.exit_code == 0, planned.output
    listed = run("-o", output, "inventory")
    assert listed.exit_code == 0, listed.output
    if output == "json":
        assert _odd_warned(json.loads(planned.output)["warnings"])
        rows = {r["resourceId"].rsplit("/", 1)[1]: r for r in json.loads(listed.output)["consumers"]}
        assert (rows["odd"]["action"], rows["odd"]["wave"]) == ("update", "last")
    else:
        assert "is not a wave number" in planned.output


def test_http_inventory_answers(stack) -> None:
    estate(stack)
    response = function_app.list_inventory(http_request("GET", "/api/inventory"))
    assert response.status_code == 200, response.get_body()
    rows = {r["resourceId"].rsplit("/", 1)[1]: r for r in json.loads(response.get_body())["consumers"]}
    assert rows["odd"]["wave"] == "last" and rows["plain"]["action"] == "update"


def test_the_worker_runs_the_key_and_moves_every_consumer(stack) -> None:
    estate(stack)
    service = stack.service()
    request = new_request(parse_key_id(s.key_id("acr-cmk")), "http", "pytest")
    message = func.QueueMessage(id="odd-wave", body=json.dumps(to_message(request)).encode())
    assert function_app.run_rotation(message) is None  # succeeded: nothing raised for a retry
    record = service.runs.get(request.request_id)
    assert record is not None and record["status"] == "succeeded", record
    keys = {r["id"].rsplit("/", 1)[1]: r["keyId"] for r in stack.admin.state()["registries"]}
    assert all(k.endswith(NEW) for k in keys.values()), keys


class Touchy(Registries):
    """The registry kind, tripping over one resource's data as any kind might over a value
    nobody foresaw (the data is whoever may tag or configure that resource)."""

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        if (resource.get("tags") or {}).get("shape") == "odd":
            raise KeyError("keyVaultProperties")
        return super().to_consumers(resource)


def test_a_resource_its_kind_cannot_read_is_reported_and_the_others_are_updated(stack) -> None:
    estate(stack, odd_tags={"shape": "odd"})
    service = stack.service()
    reconciler = Reconciler(
        service.settings, service.clients, audit=service.audit, runs=service.runs, kinds=[Touchy()]
    )
    result = reconciler.run(new_request(parse_key_id(s.key_id("acr-cmk")), "cli", "pytest"))
    assert {st.target.rsplit("/", 1)[1]: st.outcome for st in result.steps} == {
        "first": "verified",
        "plain": "verified",
    }
    [error] = result.discovery_errors
    assert error["scope"].endswith("/registries/odd") and error["code"] == "unreadable"
    assert "KeyError" in error["message"] and not error["unreachable"]
    assert result.status == "needs-attention" and result.exit_code == 3
    records, _ = service.audit.query(top=100)
    [audited] = [r for r in records if r["kind"] == "discovery-failed"]
    assert audited["target"].endswith("/registries/odd") and audited["errorCode"] == "unreadable"
