"""The sweep's near-expiry rule (issue 25): near-expiry means the newest version expires within
ROTATION_EXPIRY_WINDOW_DAYS, as the README says. A key whose newest version never expires but
that no consumer can use (an EC key) is not near expiry: the sweep queued a near-expiry run for
it every hour, reading "no desired version and the newest is enabled" as "every version
expired". A key whose every version did expire is still renewed. Through the timer trigger and
the `rotation sweep` CLI, as they run on the local stack."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import function_app
from devstack.functions_host import timer_request
from rotation.doors.cli import main
from tests import scenarios as s
from tests.support.runs import sweep_checked

pytestmark = pytest.mark.integration
EC_KEY, EXPIRED_KEY = s.key_id("ec-cmk"), s.key_id("expired-cmk")


def estate(stack) -> None:
    keys = {
        "ec-cmk": s.key(s.version("ec-1", exp=None), kty="EC"),  # never expires, never usable
        "expired-cmk": s.key(s.version("gone-1", created="-400d", exp="-2d")),  # every version ran out
    }
    stack.load(
        s.with_keyed(
            s.scenario(keys),
            (
                "appConfigurationStores",
                s.keyed("appConfigurationStores", "appcs-ec", s.key_id("ec-cmk", s.vid("ec-1"))),
            ),
            (
                "appConfigurationStores",
                s.keyed("appConfigurationStores", "appcs-expired", s.key_id("expired-cmk", s.vid("gone-1"))),
            ),
        )
    )


def test_the_timer_sweep_queues_no_near_expiry_run_for_a_key_that_never_expires(stack) -> None:
    estate(stack)
    function_app.sweep_drift(timer_request())
    found = sweep_checked(stack)
    assert found[EC_KEY]["outcome"] == "nothing-to-do", found[EC_KEY]
    assert found[EXPIRED_KEY]["outcome"] == "queued"  # renewal overdue: still queued
    dispatcher = stack.dispatcher(function_app.run_rotation)
    stats = dispatcher.run_until_idle(timeout=60)
    dispatcher.close()
    assert len(stats.invocations) == 1  # the expired key's run only


def test_the_sweep_cli_names_near_expiry_only_for_an_expiring_newest_version(stack) -> None:
    estate(stack)
    result = CliRunner().invoke(main, ["-o", "json", "sweep", "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    findings = {f["keyId"]: f for f in json.loads(result.output)["keys"]}
    assert findings[EC_KEY]["nearExpiry"] is None
    assert findings[EXPIRED_KEY]["nearExpiry"] == s.vid("gone-1")
