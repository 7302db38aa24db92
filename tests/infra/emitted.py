"""What the app emits, gathered from the code and from the telemetry it records (not copied by hand).

- audit record kinds: the first argument of every `<trail>.record(...)` call in rotation/
  (both branches of a conditional kind);
- audit record fields: the audit record's field list (every record carries these);
- run statuses: what `RunResult.status` returns (the outcome of a `run-finished` record);
- span names: the first argument of every `telemetry.span(...)` call in rotation/;
- metric names and their dimensions: what rotation.telemetry records into the OpenTelemetry
  SDK's in-memory reader when each of its metric calls runs once (as tests/unit/test_telemetry.py
  records them).

The workbook test (test_workbook.py) checks every query against these sets, so a renamed
record kind, metric or dimension breaks the test instead of leaving an empty chart.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "rotation"


def _constants(node: ast.expr) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _constants(node.body) | _constants(node.orelse)
    return set()


def _first_arguments(method: str, owner: str | None = None) -> set[str]:
    found: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            if node.func.attr != method:
                continue
            if owner is not None and not (
                isinstance(node.func.value, ast.Name) and node.func.value.id == owner
            ):
                continue
            found |= _constants(node.args[0])
    return found


@cache
def audit_kinds() -> frozenset[str]:
    return frozenset(_first_arguments("record"))


@cache
def audit_fields() -> frozenset[str]:
    from rotation.storage.audit.record import FIELDS

    return frozenset(FIELDS)


@cache
def run_statuses() -> frozenset[str]:
    tree = ast.parse((SOURCE / "model" / "results.py").read_text(encoding="utf-8"))
    (status,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and node.name == "status"
        and any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)
    ]
    return frozenset(
        value
        for node in ast.walk(status)
        if isinstance(node, ast.Return) and node.value
        for value in _constants(node.value)
    )


@cache
def span_names() -> frozenset[str]:
    return frozenset(_first_arguments("span", owner="telemetry"))


@cache
def metrics() -> dict[str, frozenset[str]]:
    """Metric name -> the dimension keys it is recorded with."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from rotation import telemetry

    reader = InMemoryMetricReader()
    telemetry.install(TracerProvider(), MeterProvider(metric_readers=[reader]))
    try:
        telemetry.run_finished("failed", 1.0, "event")
        telemetry.step_finished("registry", "update", "verified")
        telemetry.throttled("management.azure.com")
        data = reader.get_metrics_data()
    finally:
        telemetry.uninstall()
    found: dict[str, set[str]] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                keys = found.setdefault(metric.name, set())
                for point in metric.data.data_points:
                    keys |= set(point.attributes or {})
    return {name: frozenset(keys) for name, keys in found.items()}
