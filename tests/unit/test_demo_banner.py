"""`make demo`'s closing line tells the truth (issue 9 item 9): converged runs that leave a
person-needed step say which one and where the runbook covers it."""

from __future__ import annotations

from typing import Any

from tools.demo import closing_line

REGISTRY = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/contosobuild"
GROUP = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/nightly-report"
)


def run(key: str, status: str, *steps: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "keyId": key,
        "status": status,
        "steps": [{"target": t, "action": a, "outcome": o} for t, a, o in steps],
    }


def test_a_report_only_group_is_named_in_the_banner() -> None:
    runs = [
        run("k", "needs-attention", (REGISTRY, "update", "verified"), (GROUP, "redeploy-required", "skipped"))
    ]
    code, line = closing_line(runs, audit_ok=True)
    assert code == 0
    assert "converged" in line and "1 step needs a person: nightly-report redeploy-required" in line
    assert "docs/runbook.md" in line


def test_only_the_last_run_of_a_key_counts_and_failures_are_not_converged() -> None:
    earlier = run("k", "needs-attention", (GROUP, "redeploy-required", "skipped"))
    later = run("k", "succeeded", (REGISTRY, "already-current", "skipped"))
    assert closing_line([earlier, later], audit_ok=True) == (
        0,
        "[bold green]converged[/]: nothing left for a person",
    )
    failed = run("k", "failed", (REGISTRY, "update", "failed"))
    assert closing_line([failed], audit_ok=True)[0] == 1
    assert closing_line([later], audit_ok=False)[0] == 1
