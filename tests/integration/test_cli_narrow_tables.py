"""At 80 columns (what rich uses when stdout is not a terminal) the fixed vocabularies of the
step tables stay whole: actions, outcomes, kinds and versions never fold mid-word."""

from __future__ import annotations

from click.testing import CliRunner

from rotation.doors.cli import main
from tests import scenarios as s
from tests.integration.cli_support import KEY, NEW, OLD, load_estate


def narrow_estate(stack) -> None:
    load_estate(
        stack,
        [
            s.registry("a-registry-with-a-rather-long-name-indeed", s.key_id("acr-cmk", OLD)),
            s.registry("reg-current", s.key_id("acr-cmk", NEW)),
            s.registry("reg-versionless", s.key_id("acr-cmk")),
        ],
    )


def words(output: str) -> set[str]:
    return set(output.replace("│", " ").replace("┃", " ").split())


def test_plan_at_80_columns_keeps_actions_kinds_and_versions_whole(stack) -> None:
    narrow_estate(stack)
    result = CliRunner().invoke(main, ["plan", KEY], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    seen = words(result.stdout)
    assert {"already-current", "update", "registry", "versionless", OLD[:8], NEW[:8]} <= seen
    assert "versionl" not in seen


def test_rotate_at_80_columns_keeps_outcomes_whole(stack) -> None:
    narrow_estate(stack)
    result = CliRunner().invoke(main, ["rotate", KEY, "--yes"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert {"already-current", "verified", "skipped", "update", OLD[:8], NEW[:8]} <= words(result.stdout)
