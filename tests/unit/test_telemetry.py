"""rotation.telemetry with the OpenTelemetry SDK's in-memory exporter and reader (no mocks)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from rotation import telemetry

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def recorded() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry.install(tracer_provider, MeterProvider(metric_readers=[reader]))
    yield spans, reader
    telemetry.uninstall()


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_spans_carry_prefixed_attributes_and_nest(
    recorded: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    spans, _ = recorded
    with telemetry.span("rotation.run", key_id="https://v.vault.azure.net/keys/k", run_id="r1") as run:
        with telemetry.span(
            "rotation.step", target="/subscriptions/s/x", kind="registry", action="update"
        ) as step:
            step.set(outcome="verified", to_version="a" * 32, ignored=None)
        run.set(status="succeeded")
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert set(finished) == {"rotation.run", "rotation.step"}
    step_span, run_span = finished["rotation.step"], finished["rotation.run"]
    assert step_span.parent is not None and step_span.parent.span_id == run_span.context.span_id
    step_attributes, run_attributes = dict(step_span.attributes or {}), dict(run_span.attributes or {})
    assert step_attributes["rotation.outcome"] == "verified"
    assert "rotation.ignored" not in step_attributes
    assert run_attributes["rotation.status"] == "succeeded"


def test_an_exception_marks_the_span_failed_and_propagates(
    recorded: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    spans, _ = recorded
    with pytest.raises(RuntimeError), telemetry.span("rotation.run"):
        raise RuntimeError("boom")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_metrics_count_runs_steps_duration_and_throttling(
    recorded: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    _, reader = recorded
    telemetry.run_finished("succeeded", 1.5, "event")
    telemetry.run_finished("failed", 0.5, "event")
    telemetry.step_finished("registry", "update", "verified")
    telemetry.throttled("management.azure.com")
    telemetry.throttled("management.azure.com")
    runs = {p.attributes["rotation.status"]: p.value for p in points(reader, "rotation.runs")}
    assert runs == {"succeeded": 1, "failed": 1}
    (step,) = points(reader, "rotation.steps")
    assert dict(step.attributes) == {"kind": "registry", "action": "update", "outcome": "verified"}
    assert sum(p.sum for p in points(reader, "rotation.run.duration")) == pytest.approx(2.0)
    assert [p.value for p in points(reader, "rotation.throttled")] == [2]


def test_a_reverted_consumer_is_counted_and_an_event_on_the_run_span(
    recorded: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    spans, reader = recorded
    with telemetry.span("rotation.run"):
        telemetry.consumer_reverted("registry")
    (point,) = points(reader, "rotation.reverts")
    assert point.value == 1 and dict(point.attributes) == {"kind": "registry"}
    (span,) = spans.get_finished_spans()
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("consumer-reverted", {"rotation.kind": "registry"})
    ]


def test_off_by_default_records_nothing() -> None:
    assert not telemetry.active()
    with telemetry.span("rotation.run") as handle:
        handle.set(status="x")  # a no-op, not an error
    telemetry.run_finished("succeeded", 1.0)
    assert not telemetry.enabled_by({})
    assert not telemetry.enabled_by({telemetry.ENABLE_SETTING: "true"})  # no connection string
    assert telemetry.enabled_by(
        {telemetry.ENABLE_SETTING: "True", telemetry.CONNECTION_SETTING: "InstrumentationKey=x"}
    )


def test_importing_the_app_with_telemetry_off_loads_no_opentelemetry() -> None:
    code = "import sys, function_app; print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    env = {"PATH": "/usr/bin:/bin", "ROTATION_ALLOWED_VAULTS": "v.vault.azure.net"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_entra_ingestion_uses_the_apps_managed_identity() -> None:
    from azure.identity import ManagedIdentityCredential

    environ = {telemetry.AUTH_SETTING: "Authorization=AAD;ClientId=11111111-2222-3333-4444-555555555555"}
    found = telemetry._ingestion_credential(environ)
    assert isinstance(found["credential"], ManagedIdentityCredential)
    assert telemetry._ingestion_credential({}) == {}
    assert telemetry._ingestion_credential({telemetry.AUTH_SETTING: "Authorization=Key"}) == {}


def test_the_app_turns_telemetry_on_as_the_functions_docs_describe() -> None:
    import json

    host = json.loads((REPO / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"
    bicep = (REPO / "infra" / "modules" / "function-app.bicep").read_text()
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" in bicep
    assert "telemetry.configure_from_environment()" in (REPO / "function_app.py").read_text()
