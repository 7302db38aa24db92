"""`ErrorInfo.final`: the one rule the worker uses to fail a run once instead of five times
(issue 23 item 1): only a service's definitive refusal, never a timeout or our own exception."""

from __future__ import annotations

import pytest

from rotation.azure.budget import BudgetExhausted
from rotation.azure.retry import classify
from rotation.model.errors import ErrorInfo


@pytest.mark.parametrize(
    ("info", "final"),
    [
        (ErrorInfo(False, False, 404, "KeyNotFound", "no key"), True),
        (ErrorInfo(False, False, 403, "Forbidden", "no role"), True),
        (ErrorInfo(False, False, 403, "NotAllowed", "vault not allowed"), True),
        (ErrorInfo(False, False, 409, "Conflict", "rotating"), False),
        (ErrorInfo(True, True, 503, "ServiceUnavailable", "down"), False),
        (ErrorInfo(True, True, None, "ConnectionError", "reset"), False),
        (ErrorInfo(False, False, 200, "OperationFailed", "lro"), False),
    ],
)
def test_only_a_definitive_refusal_is_final(info: ErrorInfo, final: bool) -> None:
    assert info.final is final


def test_a_budget_that_ran_out_or_a_bug_is_not_final() -> None:
    assert classify(BudgetExhausted("storage did not answer")).final is False
    assert classify(KeyError("oops")).final is False
