"""The door budget (rotation/azure/budget.py) with an injected clock: no sleeping."""

from __future__ import annotations

import pytest

from rotation.azure import budget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_outside_a_door_there_is_no_budget() -> None:
    assert budget.remaining() is None
    budget.check("anything")  # never raises outside a door


def test_the_budget_counts_down_and_then_refuses() -> None:
    clock = Clock()
    with budget.door_budget(2.0, clock=clock):
        assert budget.remaining() == 2.0
        clock.now += 1.5
        assert budget.remaining() == 0.5
        clock.now += 0.5
        with pytest.raises(budget.BudgetExhausted, match="before GET storage"):
            budget.check("GET storage")
    assert budget.remaining() is None  # the door's budget ends with the door


def test_an_inner_budget_never_outlasts_the_outer_one() -> None:
    clock = Clock()
    with budget.door_budget(3.0, clock=clock):
        clock.now += 2.0
        with budget.door_budget(20.0, clock=clock):
            assert budget.remaining() == 1.0
        with budget.door_budget(0.5, clock=clock):
            assert budget.remaining() == 0.5
        assert budget.remaining() == 1.0


def test_budget_exhausted_is_not_an_azure_error_so_sdk_retries_leave_it_alone() -> None:
    from azure.core.exceptions import AzureError

    assert not issubclass(budget.BudgetExhausted, AzureError)
