"""Issue 23 item 5's smaller things, as users meet them: the emulator's state (the demo's
before/after table) shows an auto-rotating Disk Encryption Set on the version ARM shows; the demo
ends with the audit trail; `inventory --kind` says its version counts are of that kind only."""

from __future__ import annotations

import json

from tests import scenarios as s
from tests.integration.cli_support import NEW, OLD, run
from tools import demo


def estate(stack) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
            registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))],
            encryption_sets=[s.encryption_set("des-web-tier", s.key_id("acr-cmk", OLD), auto=True)],
        )
    )


def test_state_shows_an_auto_rotating_set_on_the_version_arm_shows(stack) -> None:
    estate(stack)
    [des] = stack.admin.state()["diskEncryptionSets"]
    arm = stack.service().clients.arm().get(s.des_id("des-web-tier"), "2024-03-02")
    assert arm["properties"]["activeKey"]["keyUrl"] == s.key_id("acr-cmk", NEW)
    assert des["keyId"] == s.key_id("acr-cmk", NEW)
    shown = json.loads(run("inventory", "--kind", "diskencryptionset", "-o", "json").stdout)
    assert [c["version"] for c in shown["consumers"]] == [NEW]
    stack.admin.load_scenario(stack.admin.state())  # the state reloads as the same estate
    assert stack.admin.state()["diskEncryptionSets"][0]["rotationToLatestKeyVersionEnabled"] is True


def test_the_demo_ends_with_the_audit_trail_verified_and_one_run_told(stack) -> None:
    estate(stack)
    rotated = json.loads(run("rotate", s.key_id("acr-cmk"), "--yes", "-o", "json").stdout)
    with demo.console.capture() as captured:
        ok = demo.audit_trail(demo.CliRunner(), [rotated])
    text = captured.get()
    assert ok
    assert "$ rotation audit verify" in text and "0 problem(s)" in text
    assert f"$ rotation audit show {rotated['runId'][:8]}" in text
    assert rotated["runId"] in text and "run-finished" in text


def test_inventory_by_kind_says_its_counts_are_of_that_kind_only(stack) -> None:
    estate(stack)
    table = run("inventory", "--kind", "registry")
    assert table.exit_code == 0, table.output
    assert "registry consumers only" in table.stdout
    assert "registry consumers only" not in run("inventory").stdout
    shown = json.loads(run("inventory", "--kind", "registry", "-o", "json").stdout)
    assert shown["countedKind"] == "registry"
    assert json.loads(run("inventory", "-o", "json").stdout)["countedKind"] is None
