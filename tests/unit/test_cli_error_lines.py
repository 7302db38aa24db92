"""Errors are one line each, even when stderr is not a terminal (rich would wrap at 80)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rotation.doors.cli import main


def test_a_long_configuration_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROTATION_ALLOWED_VAULTS", raising=False)
    result = CliRunner().invoke(main, ["audit", "list"])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: configuration error: ROTATION_ALLOWED_VAULTS: required")
    assert len(line) > 80 and line.endswith("contoso-cmk.vault.azure.net,contoso-hsm.managedhsm.azure.net")


def test_audit_top_is_limited_as_the_http_api_limits_it() -> None:
    refused = CliRunner().invoke(main, ["audit", "list", "--top", "1001"])
    assert refused.exit_code == 2
    assert "1001 is not in the range 1<=x<=1000" in refused.stderr
