"""Resource Graph discovery's pure parts: the query, the quota header, paging that stops on a
repeated `$skipToken`, and the wait for a quota window that is never longer than the budget."""

from __future__ import annotations

from typing import Any

import pytest

from rotation.azure import budget
from rotation.azure import resourcegraph as rg
from rotation.azure.discovery import GRAPH_FROM_SUBSCRIPTIONS, uses_graph
from rotation.model.errors import RotationError


class Answers:
    """Resource Graph answers in order, and the bodies posted (a stand-in for `Arm.post`)."""

    def __init__(self, *pages: tuple[dict[str, Any], dict[str, str]]) -> None:
        self.pages = list(pages)
        self.posted: list[dict[str, Any]] = []

    def post(
        self, path: str, api_version: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        assert (path, api_version) == (rg.PATH, rg.API_VERSION)
        self.posted.append(body)
        return self.pages.pop(0)


def test_the_query_names_each_type_once_in_lower_case_and_projects_the_arm_shape() -> None:
    query = rg.query_for(["Microsoft.Storage/storageAccounts", "microsoft.storage/storageaccounts", "A.B/c"])
    assert query == (
        "resources | where type in~ ('a.b/c', 'microsoft.storage/storageaccounts') "
        "| project id, name, type, location, tags, identity, properties"
    )
    with pytest.raises(ValueError, match="resource types"):
        rg.query_for(["x') | project secrets //"])


@pytest.mark.parametrize(
    ("header", "seconds"), [("00:00:05", 5.0), ("01:02:03", 3723.0), ("1.00:00:00", 86400.0), ("soon", None)]
)
def test_quota_resets_after_reads_the_services_timespan(header: str, seconds: float | None) -> None:
    assert rg.resets_after(header) == seconds


def test_pages_follow_the_skip_token_and_wait_when_no_quota_is_left() -> None:
    slept: list[float] = []
    arm = Answers(
        (
            {"data": [{"id": "a"}], "$skipToken": "t1"},
            {"x-ms-user-quota-remaining": "0", "x-ms-user-quota-resets-after": "00:00:04"},
        ),
        ({"data": [{"id": "b"}]}, {"x-ms-user-quota-remaining": "14"}),
    )
    rows = list(rg.query_rows(arm, ["s1"], ["a.b/c"], sleep=slept.append))  # type: ignore[arg-type]  # Answers: a stand-in Arm
    assert [r["id"] for r in rows] == ["a", "b"]
    assert slept == [4.0]
    assert arm.posted[1]["options"]["$skipToken"] == "t1"


def test_a_repeated_skip_token_stops_paging() -> None:
    page: tuple[dict[str, Any], dict[str, str]] = ({"data": [], "$skipToken": "same"}, {})
    with pytest.raises(RotationError, match="already followed"):
        list(rg.query_rows(Answers(page, page), ["s1"], ["a.b/c"], sleep=lambda _: None))  # type: ignore[arg-type]  # Answers: a stand-in Arm


def test_a_quota_wait_is_capped_and_never_outlasts_the_budget() -> None:
    def exhausted() -> Answers:
        return Answers(
            (
                {"data": [], "$skipToken": "t"},
                {"x-ms-user-quota-remaining": "0", "x-ms-user-quota-resets-after": "00:00:30"},
            ),
            ({"data": []}, {}),
        )

    slept: list[float] = []
    list(rg.query_rows(exhausted(), ["s1"], ["a.b/c"], max_wait=5.0, sleep=slept.append))  # type: ignore[arg-type]  # Answers: a stand-in Arm
    assert slept == [5.0]  # ROTATION_MAX_RETRY_AFTER_SECONDS cuts the service's 30 s
    now = [0.0]
    with budget.run_budget(10.0, clock=lambda: now[0]), pytest.raises(budget.BudgetExhausted):
        list(rg.query_rows(exhausted(), ["s1"], ["a.b/c"], max_wait=60.0, sleep=pytest.fail))  # type: ignore[arg-type]  # Answers: a stand-in Arm


def test_subscriptions_go_in_batches_of_a_thousand() -> None:
    arm = Answers(({"data": []}, {}), ({"data": []}, {}), ({"data": []}, {}))
    list(rg.query_rows(arm, [f"s{i}" for i in range(2500)], ["a.b/c"]))  # type: ignore[arg-type]  # Answers: a stand-in Arm
    assert [len(body["subscriptions"]) for body in arm.posted] == [1000, 1000, 500]


def test_auto_takes_the_graph_from_its_threshold() -> None:
    assert not uses_graph("auto", GRAPH_FROM_SUBSCRIPTIONS - 1)
    assert uses_graph("auto", GRAPH_FROM_SUBSCRIPTIONS)
    assert uses_graph("resourcegraph", 1) and not uses_graph("arm", 10_000)
