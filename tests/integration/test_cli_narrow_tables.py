"""At 80 columns (a narrow terminal, or `--width 80`; without a terminal there is no limit) the
fixed vocabularies of the step tables stay whole: actions, outcomes, kinds and versions never
fold mid-word."""

from __future__ import annotations

import json

from click.testing import CliRunner

from rotation.doors.cli import main
from tests import scenarios as s
from tests.integration.cli_support import KEY, NEW, OLD, load_estate, wide_consoles


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
    result = CliRunner().invoke(main, ["plan", KEY, "--all", "--width", "80"])
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    seen = words(result.stdout)
    assert {"already-current", "update", "registry", "versionless", OLD[:8], NEW[:8]} <= seen
    assert "versionl" not in seen


def test_rotate_at_80_columns_keeps_outcomes_whole(stack) -> None:
    narrow_estate(stack)
    result = CliRunner().invoke(main, ["rotate", KEY, "--yes", "--all", "--width", "80"])
    assert result.exit_code == 0, result.output
    assert {"already-current", "verified", "skipped", "update", OLD[:8], NEW[:8]} <= words(result.stdout)


def twin_names_estate(stack) -> None:
    """A registry and a Service Bus namespace with the same name, as real estates have."""
    base = s.scenario(
        {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
        registries=[s.registry("contosoorders", s.key_id("acr-cmk", OLD))],
    )
    namespace = s.keyed("serviceBusNamespaces", "contosoorders", s.key_id("acr-cmk", OLD))
    stack.load(s.with_keyed(base, ("serviceBusNamespaces", namespace)))


def test_steps_and_audit_records_name_the_kind_beside_the_name(stack) -> None:
    twin_names_estate(stack)
    runner = CliRunner()
    with wide_consoles():
        rotated = runner.invoke(main, ["rotate", KEY, "--yes", "--all"])
        listed = runner.invoke(main, ["audit", "list", "--key", KEY])
    assert {"registry", "servicebus"} <= words(rotated.stdout), rotated.output
    assert listed.exit_code == 0, listed.output
    flat = " ".join(listed.stdout.replace("│", " ").split())
    assert "registry contosoorders" in flat and "servicebus contosoorders" in flat
    as_json = runner.invoke(main, ["-o", "json", "audit", "list", "--key", KEY])
    targets = {r["target"] for r in json.loads(as_json.stdout)["records"] if r.get("target")}
    assert s.registry_id("contosoorders") in targets  # JSON keeps the full ids
