"""The sweep says how many consumers use keys in vaults it may not touch, and which vaults."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from rotation.doors.cli import main
from rotation.service import forget_services
from tests import scenarios as s

REPO = Path(__file__).resolve().parents[2]


def outside_estate(stack) -> None:
    stack.monkeypatch.setenv("ROTATION_ALLOWED_VAULTS", s.VAULT_HOST)
    forget_services()
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("a", created="-5d"))},
            other_vault_keys={"far-cmk": s.key(s.version("f", created="-5d"))},
            registries=[
                s.registry("reg1", s.key_id("acr-cmk", s.vid("a"))),
                s.registry("far1", s.key_id("far-cmk", s.vid("f"), vault=s.OTHER_VAULT)),
                s.registry("far2", s.key_id("far-cmk", s.vid("f"), vault=s.OTHER_VAULT)),
            ],
        )
    )


def test_sweep_json_and_audit_name_the_vaults_not_allowed(stack) -> None:
    outside_estate(stack)
    result = CliRunner().invoke(main, ["-o", "json", "sweep", "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert [f["keyId"] for f in body["keys"]] == [s.key_id("acr-cmk")]
    assert body["notAllowed"] == {"consumers": 2, "vaults": [f"{s.OTHER_VAULT}.vault.azure.net"]}
    records, _ = stack.service().audit.query(top=50)
    [finished] = [r for r in records if r["kind"] == "sweep-finished"]
    assert finished["detail"]["notAllowed"]["consumers"] == 2
    assert finished["message"] == (
        f"2 consumers use keys in vaults not allowed: {s.OTHER_VAULT}.vault.azure.net (not acted on)"
    )


def test_sweep_table_says_what_it_left_alone(stack) -> None:
    outside_estate(stack)
    result = CliRunner().invoke(main, ["sweep", "--dry-run"], catch_exceptions=False)
    assert "2 consumers use keys in vaults not allowed: fabrikam-cmk.vault.azure.net (not acted on)" in (
        result.output.replace("\n", " ")
    )


def test_the_sample_settings_allow_every_vault_and_hsm_of_the_sample_scenario() -> None:
    settings = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    allowed = set(settings["ROTATION_ALLOWED_VAULTS"].split(","))
    sample = json.loads((REPO / "emulator" / "scenarios" / "sample.json").read_text())
    hosts = {f"{name}.vault.azure.net" for name in sample.get("vaults", {})}
    hosts |= {f"{name}.managedhsm.azure.net" for name in sample.get("managedHsms", {})}
    assert "contoso-hsm.managedhsm.azure.net" in hosts
    assert hosts <= allowed
