"""bench/profile_run.py says why a mixed run needs attention: its estate holds AKS clusters
(manual-required) and container groups (redeploy-required), so that status is expected there."""

from __future__ import annotations

from collections import Counter

from bench.profile_run import explained_status


def test_the_steps_that_ask_for_a_person_are_named_with_the_status() -> None:
    actions = Counter({"update": 1000, "manual-required": 100, "redeploy-required": 100, "skip": 100})
    assert (
        explained_status("needs-attention", actions)
        == "needs-attention (100 manual-required, 100 redeploy-required)"
    )
    assert explained_status("succeeded", Counter({"update": 3})) == "succeeded"
