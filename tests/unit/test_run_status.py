"""Run status and exit codes, DESIGN.md section 7: 'converged' and when a run fails."""

from __future__ import annotations

from rotation.model.errors import ErrorInfo
from rotation.model.results import RunResult, StepResult


def step(action: str, outcome: str) -> StepResult:
    return StepResult("/t", "registry", action, "r", "m", "a", "b", outcome)


def result(
    *steps: StepResult,
    errors: list[dict] | None = None,
    error: ErrorInfo | None = None,
    dry_run: bool = False,
) -> RunResult:
    return RunResult(
        "run",
        "https://v.vault.azure.net/keys/k",
        dry_run,
        steps=list(steps),
        discovery_errors=errors or [],
        error=error,
    )


def test_converged_runs() -> None:
    assert result(step("update", "verified"), step("already-current", "skipped")).exit_code == 0
    assert result(step("update", "planned"), dry_run=True).status == "succeeded"
    assert result(step("blocked", "skipped")).exit_code == 3
    assert result(step("redeploy-required", "skipped")).status == "needs-attention"


def test_a_run_fails_only_when_a_step_failed_or_an_update_did_not_happen() -> None:
    assert result(step("update", "failed")).exit_code == 4
    assert result(step("update", "skipped")).status == "failed"  # e.g. the time budget ran out


def test_discovery_errors_unreachable_fail_forbidden_need_a_person() -> None:
    unreachable = {"scope": "sub", "kind": "registry", "unreachable": True}
    forbidden = {"scope": "sub", "kind": "registry", "unreachable": False}
    assert result(step("update", "verified"), errors=[unreachable]).exit_code == 5
    assert result(step("update", "verified"), errors=[forbidden]).exit_code == 3


def test_run_level_errors() -> None:
    assert result(error=ErrorInfo(False, True, None, "ConnectionError", "x")).exit_code == 5
    assert result(error=ErrorInfo(False, False, 404, "KeyNotFound", "x")).exit_code == 2
    assert result(error=ErrorInfo(False, False, 403, "NotAllowed", "x")).exit_code == 4


def test_an_interrupted_run_says_so_with_its_counts_and_exits_130_unless_a_target_failed() -> None:
    run = result(step("update", "verified"), step("update", "in-flight"), step("update", "skipped"))
    assert run.status == "failed"  # not stopped early: an update that did not happen fails it
    run.interrupted = "SIGINT"
    assert (run.status, run.exit_code) == ("interrupted", 130)
    assert run.to_dict()["interrupted"] == {
        "reason": "SIGINT",
        "moved": 1,
        "inFlight": 1,
        "notStarted": 1,
        "failed": 0,
    }
    run.steps.append(step("update", "failed"))
    assert (run.status, run.exit_code) == ("interrupted", 4)  # the failure still needs a person
    assert result(step("update", "verified")).to_dict()["interrupted"] is None
