"""SansIO policies run inline in one pipeline node (rotation/azure/inline.py) see their hooks in
the order, and with the errors, that azure-core's own runner per policy gives them: each case is
run both ways and the two records compared."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.pipeline import Pipeline, PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.rest import HttpRequest

from bench.arm_policies import Canned
from rotation.azure.inline import InlinePolicies


class Boom(Exception):
    pass


class Recording(SansIOHTTPPolicy[Any, Any]):
    """Records its hooks in `log`; raises in the hooks named in `fails` (`on_exception` too)."""

    def __init__(self, name: str, log: list[str], fails: frozenset[str] = frozenset()) -> None:
        self.name, self.log, self.fails = name, log, fails

    def _hook(self, hook: str) -> None:
        self.log.append(f"{self.name}.{hook}")
        if hook in self.fails:
            raise Boom(f"{self.name}.{hook}")

    def on_request(self, request: PipelineRequest[Any]) -> None:
        self._hook("request")

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        self._hook("response")

    def on_exception(self, request: PipelineRequest[Any]) -> None:
        self._hook("exception")


class Transport(Canned):
    def __init__(self, log: list[str], fails: bool) -> None:
        self.log, self.fails = log, fails

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.log.append("sent")
        if self.fails:
            raise Boom("transport")
        return super().send(request, **kwargs)


def record(inline: bool, fails: dict[str, frozenset[str]], transport_fails: bool) -> tuple[list[str], str]:
    log: list[str] = []
    policies = [Recording(name, log, fails.get(name, frozenset())) for name in ("a", "b", "c")]
    chain: list[Any] = [InlinePolicies(*policies)] if inline else policies
    pipeline: Pipeline[Any, Any] = Pipeline(Transport(log, transport_fails), chain)
    try:
        pipeline.run(HttpRequest("GET", "https://example.test/"))
        raised = ""
    except Boom as exc:
        raised = str(exc)
    return log, raised


CASES = {
    "answered": ({}, False),
    "the transport fails": ({}, True),
    "the first on_request fails": ({"a": frozenset({"request"})}, False),
    "a middle on_request fails": ({"b": frozenset({"request"})}, False),
    "the last on_request fails": ({"c": frozenset({"request"})}, False),
    "the innermost on_response fails": ({"c": frozenset({"response"})}, False),
    "a middle on_response fails": ({"b": frozenset({"response"})}, False),
    "an on_exception fails too": ({"b": frozenset({"exception"})}, True),
}


@pytest.mark.parametrize("case", CASES)
def test_inline_policies_see_what_azure_cores_runners_show_them(case: str) -> None:
    fails, transport_fails = CASES[case]
    assert record(True, fails, transport_fails) == record(False, fails, transport_fails)


def test_the_records_differ_between_cases() -> None:
    # the comparison above means something: the cases exercise different paths
    records = [record(False, *CASES[case]) for case in CASES]
    assert len({(tuple(log), raised) for log, raised in records}) == len(CASES)
