"""Issue 21 item 5, the sweep: it checks each key on its own. One consumer tagged
`cmk-rotation-wave=²` used to make the sweep raise for the whole estate, so another key
expiring in 5 days got no request (and the sweep is the only door for Managed HSM keys). A key
the sweep cannot check is reported (table, JSON, audit); every other key still gets its request."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

import function_app
from devstack.functions_host import timer_request
from rotation.estate.sweep import sweep
from rotation.model.ids import KeyRef
from rotation.model.results import Plan
from rotation.run.reconcile import Reconciler
from tests import scenarios as s
from tests.integration.cli_support import run
from tests.support.runs import sweep_checked

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
ACR, SOON = s.key_id("acr-cmk"), s.key_id("batch-cmk")


def estate(stack) -> None:
    """acr-cmk: one consumer behind, tagged with a wave int() cannot read. batch-cmk: its one
    version expires in 5 days and its consumer is on it (near expiry: the sweep queues it)."""
    stack.load(
        s.scenario(
            {
                "acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h")),
                "batch-cmk": s.key(s.version("soon", created="-360d", exp="+5d")),
            },
            registries=[s.registry("odd", s.key_id("acr-cmk", OLD), tags={"cmk-rotation-wave": "\u00b2"})],
            batch_accounts=[s.batch("b1", s.key_id("batch-cmk", s.vid("soon")))],
        )
    )


def test_the_timer_sweep_queues_both_keys(stack) -> None:
    estate(stack)
    function_app.sweep_drift(timer_request())
    checked = sweep_checked(stack)
    assert {k: r["outcome"] for k, r in checked.items()} == {ACR: "queued", SOON: "queued"}
    assert checked[SOON]["detail"]["nearExpiry"] == s.vid("soon")


@pytest.mark.parametrize("output", ["table", "json"])
def test_cli_sweep_reports_both_keys(stack, output: str) -> None:
    estate(stack)
    result = run("-o", output, "sweep", "--dry-run")
    assert result.exit_code == 0, result.output
    if output == "json":
        keys = {f["keyId"]: f for f in json.loads(result.output)["keys"]}
        assert keys[ACR]["behind"] == 1 and keys[SOON]["nearExpiry"] == s.vid("soon")
    else:
        assert result.output.count("would queue") == 2


class Fragile(Reconciler):
    """A reconciler that trips over one key, as any unforeseen error in checking a key would."""

    def plan_from(self, key: KeyRef, *args: Any) -> Plan:
        if key.name == "acr-cmk":
            raise RuntimeError("unforeseen trouble with acr-cmk")
        return super().plan_from(key, *args)


def _fragile(stack) -> SimpleNamespace:
    service = stack.service()
    reconciler = Fragile(service.settings, service.clients, audit=service.audit, runs=service.runs)
    return SimpleNamespace(
        settings=service.settings,
        clients=service.clients,
        reconciler=reconciler,
        audit=service.audit,
        runs=service.runs,
        requests_queue=service.requests_queue,
        shards=service.shards,
    )


def test_a_key_the_sweep_cannot_check_is_reported_and_the_others_are_queued(stack) -> None:
    estate(stack)
    result = sweep(_fragile(stack))
    findings = {f.key.versionless_id: f for f in result.findings}
    assert findings[SOON].request_id is not None  # the other key still got its request
    assert findings[ACR].request_id is None and "RuntimeError" in (findings[ACR].error or "")
    assert "unforeseen trouble" in findings[ACR].to_dict()["error"]
    checked = sweep_checked(stack)
    assert (checked[ACR]["outcome"], checked[SOON]["outcome"]) == ("failed", "queued")
    assert "unforeseen trouble" in checked[ACR]["message"]
