"""A real run on the local stack with telemetry on: the SDK's in-memory exporter and reader see
the run span, a span per target step, the Azure SDK calls inside them, and the run, step and
throttling metrics. With telemetry off (the default) nothing is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rotation import telemetry
from rotation.doors.worker import run_request
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from tests.conftest import Stack
from tests.scenarios import key, key_id, registry, scenario, version, vid

pytestmark = pytest.mark.integration

_SPANS = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_SPANS))


@pytest.fixture(scope="module", autouse=True)
def azure_sdk_tracing() -> Iterator[None]:
    # What the distro's azure_sdk instrumentation does in Azure: azure-core traces through
    # OpenTelemetry's global provider (set once per process).
    from azure.core.settings import settings

    trace.set_tracer_provider(_PROVIDER)
    previous = settings.tracing_implementation()
    settings.tracing_implementation = "opentelemetry"
    yield
    settings.tracing_implementation = previous


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    _SPANS.clear()
    metrics = InMemoryMetricReader()
    telemetry.install(_PROVIDER, MeterProvider(metric_readers=[metrics]))
    yield metrics
    telemetry.uninstall()


def estate(stack: Stack) -> None:
    stack.load(
        scenario(
            keys={"acr-cmk": key(version("old"), version("new", created="-1d"))},
            registries=[registry(f"acr{i}", key_id("acr-cmk", vid("old"))) for i in range(2)]
            + [registry("acr-current", key_id("acr-cmk", vid("new")))],
        )
    )


def run_once(stack: Stack) -> Any:
    request = new_request(parse_key_id(key_id("acr-cmk")), "cli", "test")
    return run_request(stack.service(), request)


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [
        p
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


def test_a_run_is_one_span_with_a_span_per_target_and_the_sdk_calls_inside(
    stack: Stack, reader: InMemoryMetricReader
) -> None:
    estate(stack)
    result = run_once(stack)
    assert result.status == "succeeded"
    spans = _SPANS.get_finished_spans()
    (run,) = [s for s in spans if s.name == "rotation.run"]
    steps = [s for s in spans if s.name == "rotation.step"]
    # attributes are Optional on a span; these spans all carry them
    run_attributes, step_attributes = dict(run.attributes or {}), [dict(s.attributes or {}) for s in steps]
    assert run_attributes["rotation.status"] == "succeeded"
    assert run_attributes["rotation.key_id"] == key_id("acr-cmk")
    assert sorted(str(a["rotation.target"]).rsplit("/", 1)[1] for a in step_attributes) == ["acr0", "acr1"]
    assert {a["rotation.outcome"] for a in step_attributes} == {"verified"}
    assert {a["rotation.to_version"] for a in step_attributes} == {vid("new")}
    assert all(s.parent is not None and s.parent.span_id == run.context.span_id for s in steps)
    # azure-core's spans for the SDK calls sit inside the run (PATCH of each registry among them)
    inside = [s for s in spans if s.parent is not None and s.name not in ("rotation.run", "rotation.step")]
    methods = [dict(s.attributes or {}) for s in inside]
    assert any(a.get("http.request.method", a.get("http.method")) == "PATCH" for a in methods)
    # never key material: attribute values are ids, versions, names and counts
    for span in spans:
        for value in (span.attributes or {}).values():
            assert "BEGIN" not in str(value) and '"n":' not in str(value)

    runs = metric_points(reader, "rotation.runs")
    assert [(p.attributes["rotation.status"], p.value) for p in runs] == [("succeeded", 1)]
    steps_by = {
        (p.attributes["action"], p.attributes["outcome"]): p.value
        for p in metric_points(reader, "rotation.steps")
    }
    assert steps_by == {("update", "verified"): 2, ("already-current", "skipped"): 1}
    assert metric_points(reader, "rotation.run.duration")[0].count == 1


def test_429s_are_counted(stack: Stack, reader: InMemoryMetricReader) -> None:
    estate(stack)
    stack.admin.add_fault(
        method="PATCH", host="management.azure.com", pathRegex="acr0", status=429, retryAfter=0, count=2
    )
    assert run_once(stack).status == "succeeded"
    assert sum(p.value for p in metric_points(reader, "rotation.throttled")) == 2


def test_with_telemetry_off_nothing_is_recorded(stack: Stack) -> None:
    _SPANS.clear()
    estate(stack)
    assert not telemetry.active()
    assert run_once(stack).status == "succeeded"
    assert not [s for s in _SPANS.get_finished_spans() if s.name.startswith("rotation.")]
