"""ROTATION_EXECUTION=threads: a thread per target in flight, the way back from the hub (the
default, rotation/hub.py, which every other test runs on). The same end-to-end tests with a
thread per target: every kind moved and verified, retries and their waits, long-running writes
that fail, a Log Analytics re-wrap left to a later run, PUT kinds, a container group redeployed
(azure-core pollers of their own threads), a Ctrl-C, a second one and the budget's end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import tests.integration.test_cmk_kinds as cmk_kinds
import tests.integration.test_interrupted_runs as interrupted
import tests.integration.test_more_kinds as more_kinds
import tests.integration.test_put_kinds as put_kinds
import tests.integration.test_reconcile as reconcile

pytestmark = pytest.mark.integration

WITH_THREADS: list[Callable[[Any], None]] = [
    cmk_kinds.test_pinned_consumers_of_every_kind_move_and_self_rotating_ones_are_left_alone,
    cmk_kinds.test_throttling_and_server_errors_on_each_write_are_retried,
    more_kinds.test_one_event_moves_the_pinned_leaves_the_rest_and_reports_aks_with_commands,
    more_kinds.test_failed_long_running_write_leaves_the_old_version_and_a_replay_converges,
    more_kinds.test_a_log_analytics_rewrap_longer_than_the_run_budget_is_left_for_a_later_run,
    put_kinds.test_one_run_moves_each_pinned_resource_with_one_put_and_keeps_every_other_field,
    reconcile.TestContainerGroupRedeploy().test_redeploy_recreates_the_group_on_the_new_version,
    interrupted.test_ctrl_c_closes_the_run_interrupted_with_every_write_recorded,
    interrupted.test_the_budget_ending_closes_the_run_and_releases_the_lease,
    interrupted.test_a_second_ctrl_c_records_the_writes_still_under_way_as_in_flight,
]


@pytest.mark.parametrize("test", WITH_THREADS, ids=lambda t: t.__name__.removeprefix("test_"))
def test_with_a_thread_per_target(stack, test: Callable[[Any], None]) -> None:
    stack.set(ROTATION_EXECUTION="threads")
    test(stack)
