"""Issue 23 item 3: output without a terminal (a pipe, a CI log, `| tee`). No width limit (or
`--width N`), the summary first, then only the rows that change, fail or need a person (`--all`
for every row), the "needs a person" line grouped by reason with counts, and progress lines on
stderr while `rotate` works and while it waits for another run's lease."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rotation.doors.cli import main
from rotation.doors.cli.commands_run import take_lease
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.storage.ledger import Lease
from tests import scenarios as s
from tests.integration.cli_support import KEY, NEW, OLD

CURRENT, BEHIND, CLUSTERS, GROUPS = 20, 20, 5, 2
ROWS = CURRENT + BEHIND + CLUSTERS + GROUPS


def mixed_estate(stack) -> None:
    """Registries current and behind, AKS clusters (a long `manual-required` command line each)
    and container groups (redeploy-required under the report policy)."""
    base = s.scenario(
        {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
        registries=[
            s.registry(f"reg{i:02d}", s.key_id("acr-cmk", NEW if i < CURRENT else OLD))
            for i in range(CURRENT + BEHIND)
        ],
        groups=[s.group(f"nightly{i}", "acr-cmk", OLD) for i in range(GROUPS)],
    )
    clusters = [
        ("managedClusters", s.keyed("managedClusters", f"aks{i}", s.key_id("acr-cmk", OLD)))
        for i in range(CLUSTERS)
    ]
    stack.load(s.with_keyed(base, *clusters))


def piped(*args: str) -> subprocess.CompletedProcess[str]:
    """`rotation ARGS | cat`: stdout and stderr are pipes, as in CI; no COLUMNS in sight."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-m", "rotation", *args], capture_output=True, text=True, env=env, timeout=120
    )


def rows(stdout: str) -> list[str]:
    """The table's lines: from its header to the line saying what it left out."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("target "))
    return [line for line in lines[start + 1 :] if "not shown" not in line]


NEEDS_PERSON = (
    f"{CLUSTERS + GROUPS} steps need a person: "
    f"{CLUSTERS} manual-required (kms-whole-cluster-update): aks0, aks1, aks2 and 2 more; "
    f"{GROUPS} redeploy-required (report-only-policy): nightly0, nightly1; see docs/runbook.md section 2"
)


def test_plan_in_a_pipe_is_summary_first_then_one_whole_line_per_row_that_matters(stack) -> None:
    mixed_estate(stack)
    result = piped("plan", KEY)
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == f"{ROWS} consumers: {CURRENT} already-current, {CLUSTERS} manual-required, " + (
        f"{GROUPS} redeploy-required, {BEHIND} update"
    )
    assert lines[2] == NEEDS_PERSON  # one line, however many resources: grouped, counted
    assert lines[3].split() == ["target", "kind", "action", "from", "to", "why"]
    shown = rows(result.stdout)
    assert len(shown) == BEHIND + CLUSTERS + GROUPS  # the current ones are counted, not listed
    aks = [line for line in shown if line.startswith("aks0 ")]
    assert len(aks) == 1 and "manual-required" in aks[0] and aks[0].endswith("are re-encrypted.")
    assert "kubectl replace -f -" in aks[0]  # the whole command, on the row's own line
    assert f"{CURRENT} more not shown ({CURRENT} already-current): --all lists every one" in lines
    assert result.stderr == "reading Key Vault and ARM…\n"


def test_all_lists_every_row_and_json_keeps_every_step(stack) -> None:
    mixed_estate(stack)
    every = piped("plan", KEY, "--all")
    assert len(rows(every.stdout)) == ROWS and "not shown" not in every.stdout
    as_json = piped("plan", KEY, "-o", "json")
    plan = json.loads(as_json.stdout)
    assert len(plan["steps"]) == ROWS and plan["summary"]["already-current"] == CURRENT
    assert as_json.stderr == ""  # progress is for people: -o json keeps stderr for failures


@pytest.mark.parametrize("how", ["--width", "COLUMNS"])
def test_width_fits_the_table_to_n_columns(stack, how: str) -> None:
    mixed_estate(stack)
    if how == "--width":
        result = piped("plan", KEY, "--width", "100")
    else:
        env = {**os.environ, "COLUMNS": "100"}
        result = subprocess.run(
            [sys.executable, "-m", "rotation", "plan", KEY],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert result.returncode == 3
    assert max(len(line) for line in result.stdout.splitlines()) <= 100
    assert "manual-required" in result.stdout.replace("│", " ").split()  # fixed words stay whole


def test_rotate_in_a_pipe_says_on_stderr_what_it_is_doing(stack) -> None:
    mixed_estate(stack)
    result = piped("rotate", KEY, "--yes")
    assert result.returncode == 3, result.stderr
    progress = result.stderr.splitlines()
    assert progress[:2] == ["reading Key Vault and ARM…", f"updating {BEHIND} consumers…"]
    assert progress[-1].startswith(f"updated {BEHIND} of {BEHIND} in ")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run ") and lines[0].endswith("status needs-attention")
    assert lines[1] == f"moved: {CURRENT + CLUSTERS + GROUPS} skipped, {BEHIND} verified"
    assert lines[2] == NEEDS_PERSON
    assert len(rows(result.stdout)) == BEHIND + CLUSTERS + GROUPS


def test_rotate_table_through_click_lists_all_with_all(stack) -> None:
    mixed_estate(stack)
    result = CliRunner(env={"COLUMNS": None}).invoke(main, ["rotate", KEY, "--yes", "--all"])
    assert result.exit_code == 3, result.output
    assert len(rows(result.stdout)) == ROWS
    assert sum("already-current" in line and "skipped" in line for line in rows(result.stdout)) == CURRENT


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_wait_for_another_runs_lease_is_said_when_it_starts_goes_on_and_ends(stack, capsys) -> None:
    mixed_estate(stack)
    service = stack.service()
    key = parse_key_id(KEY)
    other = service.ledger.acquire(key, owner="run-other/1")
    assert isinstance(other, Lease)
    clock = Clock()

    def sleep(seconds: float) -> None:  # the other run ends after about 25 s
        clock.now += seconds
        if clock.now >= 1025:
            other.release()

    lease = take_lease(service, new_request(key, "cli", "tester"), sleep=sleep, clock=clock)
    lease.release()
    said = capsys.readouterr().err.splitlines()
    assert said[0].startswith(f"waiting for run run-other/1 to release {KEY} (held until ")
    assert any(line.startswith("still waiting for run run-other/1") for line in said[1:-1])
    assert said[-1] == f"took the lease on {KEY} after waiting {clock.now - 1000:.0f} s"


def test_a_wait_past_the_budget_says_it_gave_up(stack, capsys) -> None:
    mixed_estate(stack)
    stack.set(ROTATION_TIME_BUDGET_SECONDS="60")
    service = stack.service()
    key = parse_key_id(KEY)
    other = service.ledger.acquire(key, owner="run-other/2")
    assert isinstance(other, Lease)
    clock = Clock()

    def sleep(seconds: float) -> None:
        clock.now += seconds
        other.renew()  # the other run keeps its lease

    try:
        with pytest.raises(SystemExit) as exited:
            take_lease(service, new_request(key, "cli", "tester"), sleep=sleep, clock=clock)
    finally:
        other.release()
    assert exited.value.code == 4
    said = capsys.readouterr().err
    assert f"gave up on the lease on {KEY} after waiting" in said
    assert "error: run run-other/2 holds" in said


def test_inventory_and_report_in_a_pipe_keep_one_consumer_a_line(stack) -> None:
    mixed_estate(stack)
    inventory = piped("inventory")
    assert inventory.returncode == 0, inventory.stderr
    lines = inventory.stdout.splitlines()
    assert lines[0].split() == ["resource", "key", "holds", "desired", "action", "wave"]
    names = [line.split()[0] for line in lines[1 : ROWS + 1]]
    assert sorted(names) == sorted(
        [f"reg{i:02d}" for i in range(CURRENT + BEHIND)]
        + [f"aks{i}" for i in range(CLUSTERS)]
        + [f"nightly{i}" for i in range(GROUPS)]
    )
    report = piped("report", "--max-age-days", "90")
    stale = [line for line in report.stdout.splitlines() if " created 200 days ago (over 90) " in line]
    assert len(stale) == BEHIND + CLUSTERS + GROUPS  # one line each, the reason whole on it
