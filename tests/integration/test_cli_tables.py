"""Every CLI command in its default table output against the local stack: it ends with its
documented exit code and says what happened (issue 9: `sweep` crashed here after queuing,
because tests only ran it with `-o json`)."""

from __future__ import annotations

import json

import pytest

from tests import scenarios as s
from tests.integration.cli_support import KEY, NEW, OLD, load_estate, run
from tests.integration.test_replay import dead_letter, seed_dead_letters, upload


def estate(stack, *groups: dict) -> None:
    registries = [s.registry("reg1", s.key_id("acr-cmk", OLD)), s.registry("reg2", s.key_id("acr-cmk", NEW))]
    load_estate(stack, registries, list(groups))


def test_plan_table_names_each_target_and_its_action(stack) -> None:
    estate(stack)
    result = run("plan", KEY)
    assert result.exit_code == 0
    assert "reg1" in result.stdout and "update" in result.stdout and "already-current" in result.stdout


def test_rotate_table_shows_outcomes_and_the_summary(stack) -> None:
    estate(stack)
    result = run("rotate", KEY, "--yes")
    assert result.exit_code == 0, result.output
    assert "verified" in result.stdout and "moved: 1 skipped, 1 verified" in result.stdout


@pytest.mark.parametrize("dry_run", [True, False])
def test_sweep_table_ends_cleanly_after_queuing(stack, dry_run: bool) -> None:
    estate(stack)
    result = run("sweep", *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 0, result.output
    assert KEY in result.stdout
    assert ("would queue" in result.stdout) if dry_run else ("queued " in result.stdout)
    queued = stack.service().clients.queue("rotation-requests").peek_messages(max_messages=5)
    assert len(queued) == (0 if dry_run else 1)


def test_audit_list_show_and_verify_tables(stack) -> None:
    estate(stack)
    run("rotate", KEY, "--yes")
    listed = run("audit", "list", "--key", KEY)
    assert listed.exit_code == 0 and "verified" in listed.stdout and "reg1" in listed.stdout
    run_id = stack.service().audit.query(key=KEY, top=1)[0][0]["runId"]
    shown = run("audit", "show", run_id)
    assert shown.exit_code == 0 and run_id in shown.stdout and "succeeded" in shown.stdout
    verified = run("audit", "verify")
    assert verified.exit_code == 0 and "0 problem(s)" in verified.stdout


def test_a_person_needed_step_is_named_in_the_output(stack) -> None:
    """Issue 9: a run on the sample estate ends needs-attention / exit 3; the output says why."""
    estate(stack, s.group("nightly-report", "acr-cmk", OLD))
    planned = run("plan", KEY)
    assert planned.exit_code == 3
    line = (
        "1 step needs a person: 1 redeploy-required (report-only-policy): nightly-report; "
        "see docs/runbook.md section 2"
    )
    assert line in " ".join(planned.stdout.split())
    rotated = run("rotate", KEY, "--yes")
    assert rotated.exit_code == 3 and "needs-attention" in rotated.stdout
    assert line in " ".join(rotated.stdout.split())


def test_a_target_outside_the_allowed_subscriptions_is_refused_alone(stack) -> None:
    """Issue 9 item 11: only the refusal, naming the setting; nothing is read."""
    estate(stack)
    elsewhere = s.registry_id("reg9", sub="00000000-0000-0000-0000-0000000000ff")
    result = run("rotate", KEY, "--target", elsewhere, "--yes")
    assert result.exit_code == 2
    assert (
        "ROTATION_SUBSCRIPTIONS" in result.output and "00000000-0000-0000-0000-0000000000ff" in result.output
    )
    assert "desired" not in result.output and "no consumers" not in result.output
    assert len(result.output.strip().splitlines()) <= 2  # one line, wrapped at most once by rich
    assert stack.admin.calls()["total"] == 0


def test_deadletters_and_replay_tables_name_the_failing_target_and_code(stack) -> None:
    """Issue 9 item 12: the why column and the replay output say what failed, without `audit show`."""
    estate(stack)
    stack.service()
    event = s.event_grid_event("KeyNewVersionCreated", "acr-cmk", NEW, event_id="dl-1")
    upload(stack, "2026/11/20/21/0b7c1e9a-1111-4c1e-9f00-aaaaaaaaaaaa.json", [dead_letter(event)])
    listed = run("deadletters", "list")
    assert listed.exit_code == 0 and "MaxDeliveryAttemptsExceeded Aborted HTTP 500" in " ".join(
        listed.stdout.split()
    )
    stack.admin.add_fault(method="PATCH", pathRegex="registries/reg1$", status=403)
    replayed = run("replay", "--yes")
    assert replayed.exit_code == 4
    flat = " ".join(replayed.stdout.split())
    assert "→ run" in flat and "failed: reg1: AuthorizationFailed" in flat
    listed = run("deadletters", "list")
    assert "last replay: reg1: AuthorizationFailed" in " ".join(listed.stdout.split())
    as_json = run("deadletters", "list", "-o", "json", "--query", "[0].lastReplayFailures")
    assert json.loads(as_json.stdout) == ["reg1: AuthorizationFailed"]


def test_deadletters_table_with_unreplayable_items(stack) -> None:
    estate(stack)
    stack.service()
    seed_dead_letters(stack)
    result = run("deadletters", "list")
    assert result.exit_code == 0 and "malformed blob" in result.stdout
