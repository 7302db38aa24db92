"""The `rotation` command line against the local stack: output, confirmation and exit codes."""

from __future__ import annotations

import json

from tests import scenarios as s
from tests.integration.cli_support import wide_consoles
from tests.support.commands import invoke

OLD, NEW = s.vid("old"), s.vid("new")


def fleet(stack, **group_kwargs: object) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
            registries=[
                s.registry("reg1", s.key_id("acr-cmk", OLD)),
                s.registry("reg2", s.key_id("acr-cmk", OLD), sub=s.SUB_B),
            ],
        )
    )


def test_plan_json_and_table(stack) -> None:
    fleet(stack)
    code, output = invoke("--output", "json", "plan", s.key_id("acr-cmk"))
    plan = json.loads(output)
    assert code == 0 and plan["desiredVersion"] == NEW and plan["summary"] == {"update": 2}
    code, output = invoke("plan", s.key_id("acr-cmk"))
    assert code == 0 and "reg1" in output and "update" in output
    assert stack.writes("PATCH") == []


def test_rotate_asks_before_writing_and_refuses_without_a_terminal(stack) -> None:
    fleet(stack)
    code, output = invoke("rotate", s.key_id("acr-cmk"))
    assert code == 2 and "--yes" in output
    assert stack.writes("PATCH") == []


def test_rotate_yes_converges_and_audits_the_operator(stack) -> None:
    fleet(stack)
    code, output = invoke("-o", "json", "rotate", s.key_id("acr-cmk"), "--yes")
    result = json.loads(output)
    assert code == 0 and result["status"] == "succeeded" and result["summary"] == {"verified": 2}
    assert all(r["keyId"].endswith(NEW) for r in stack.admin.state()["registries"])
    records, _ = stack.service().audit.query(run=result["runId"], top=100)
    assert all(r["actor"].startswith("cli:") for r in records)
    code, output = invoke("-o", "json", "rotate", s.key_id("acr-cmk"), "--yes")
    assert code == 0 and json.loads(output)["summary"] == {"skipped": 2}


def test_rotate_dry_run_and_version_assertion(stack) -> None:
    fleet(stack)
    code, output = invoke("-o", "json", "rotate", s.key_id("acr-cmk"), "--dry-run")
    assert code == 0 and json.loads(output)["summary"] == {"planned": 2}
    code, output = invoke("rotate", s.key_id("acr-cmk", OLD), "--yes")
    assert code == 2 and NEW in output
    assert stack.writes("PATCH") == []


def test_exit_codes_for_people_failures_and_unreachable(stack) -> None:
    fleet(stack)
    stack.admin.add_fault(method="PATCH", pathRegex="registries/reg2$", status=403)
    with wide_consoles():  # the hint is read whole, not folded across table rows at 80 columns
        code, output = invoke("rotate", s.key_id("acr-cmk"), "--yes")
    assert code == 4 and "rotation role" in output
    stack.admin.clear_faults()
    stack.admin.add_fault(host="contoso-cmk.vault.azure.net", drop=True)
    assert invoke("plan", s.key_id("acr-cmk"))[0] == 5
    stack.admin.clear_faults()
    code, _ = invoke("rotate", "https://contoso-cmk.vault.azure.net/keys/missing-key", "--yes")
    assert code == 2
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
            groups=[s.group("grp", "acr-cmk", OLD)],
        )
    )
    assert invoke("plan", s.key_id("acr-cmk"))[0] == 3


def test_usage_and_configuration_errors_exit_2(stack) -> None:
    assert invoke("plan", "not-a-key-id")[0] == 2
    assert invoke("plan", "https://elsewhere.vault.azure.net/keys/k")[0] == 2
    stack.monkeypatch.delenv("ROTATION_SUBSCRIPTIONS")
    code, output = invoke("plan", s.key_id("acr-cmk"))
    assert code == 2 and "ROTATION_SUBSCRIPTIONS" in output
