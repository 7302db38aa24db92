"""Issue 23 item 5: `rotation versions enable VERSIONED_KEYID` undoes a forced disable, audited,
with the same guards and messages as `versions disable` (table and JSON)."""

from __future__ import annotations

import json

from tests import scenarios as s
from tests.integration.cli_support import NEW, OLD, load_estate, run
from tests.integration.test_estate import audit_of, key_enabled


def forced_off(stack) -> None:
    """reg1 holds the newest version, which was disabled with --force (a revocation)."""
    load_estate(stack, [s.registry("reg1", s.key_id("acr-cmk", NEW))])
    forced = run("versions", "disable", s.key_id("acr-cmk", NEW), "--yes", "--force")
    assert forced.exit_code == 0 and not key_enabled(stack, NEW)


def test_enable_undoes_a_forced_disable_audited_and_says_the_desired_version(stack) -> None:
    forced_off(stack)
    plan = json.loads(run("plan", s.key_id("acr-cmk"), "-o", "json").stdout)
    assert plan["desiredVersion"] == OLD  # with the newest disabled, the older one is desired
    refused = run("versions", "enable", s.key_id("acr-cmk", NEW))
    assert refused.exit_code == 2 and "--yes" in refused.stderr and not key_enabled(stack, NEW)
    done = run("versions", "enable", s.key_id("acr-cmk", NEW), "--yes", "-o", "json")
    assert done.exit_code == 0, done.output
    outcome = json.loads(done.stdout)
    assert outcome["outcome"] == "enabled" and f"desired version is now {NEW}" in outcome["message"]
    assert key_enabled(stack, NEW)
    [record] = audit_of(stack, "version-enable")
    assert (
        record["outcome"] == "enabled" and record["toVersion"] == NEW and record["actor"].startswith("cli:")
    )
    again = run("versions", "enable", s.key_id("acr-cmk", NEW), "--yes")
    assert again.exit_code == 0 and "already-enabled" in again.stdout
    assert json.loads(run("plan", s.key_id("acr-cmk"), "-o", "json").stdout)["desiredVersion"] == NEW
    assert run("audit", "verify").exit_code == 0


def test_enable_refuses_what_disable_refuses(stack) -> None:
    forced_off(stack)
    for output in ("table", "json"):
        versionless = run("versions", "enable", s.key_id("acr-cmk"), "--yes", "-o", output)
        assert versionless.exit_code == 2 and "version" in versionless.stderr
        unknown = run("versions", "enable", s.key_id("acr-cmk", s.vid("nope")), "--yes", "-o", output)
        assert unknown.exit_code == 2 and f"has no version {s.vid('nope')}" in unknown.stderr
        outside = run("versions", "enable", s.key_id("other", NEW, vault="evil-cmk"), "--yes", "-o", output)
        assert outside.exit_code == 2 and "ROTATION_ALLOWED_VAULTS" in outside.stderr
    assert not key_enabled(stack, NEW)
