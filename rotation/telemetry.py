"""OpenTelemetry for runs and target steps: spans, a few metrics, Azure SDK calls traced.

Off unless the app turns it on the way the Functions docs describe for Python: host.json
`"telemetryMode": "OpenTelemetry"`, the app setting `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`
and `APPLICATIONINSIGHTS_CONNECTION_STRING`; then the Azure Monitor distro exports to Application
Insights, and its `azure_sdk` instrumentation (azure-core's OpenTelemetry plugin) traces every SDK
call inside our spans. While off, nothing of OpenTelemetry is imported and every call here is a
cheap no-op, so cold start does not grow.

Attributes are ids, actions, outcomes and versions only: never key material (the product never
holds any) and never secrets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("rotation.telemetry")

ENABLE_SETTING = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTH_SETTING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
SCOPE = "rotation"


@dataclass(frozen=True)
class _Instruments:
    tracer: Any
    runs: Any  # counter: runs by status
    steps: Any  # counter: target steps by kind, action and outcome
    run_duration: Any  # histogram, seconds
    throttled: Any  # counter: 429 answers seen, by host
    reverts: Any  # counter: consumers found reverted to an older key version, by kind


_active: _Instruments | None = None


class Span:
    """What a caller may do with the current span; a no-op while telemetry is off."""

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def set(self, **attributes: Any) -> None:
        if self._span is not None:
            self._span.set_attributes(_attributes(attributes))

    def failed(self, exc: BaseException) -> None:
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.record_exception(exc)
            self._span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def enabled_by(environ: Mapping[str, str]) -> bool:
    return environ.get(ENABLE_SETTING, "").strip().lower() == "true" and bool(environ.get(CONNECTION_SETTING))


def configure_from_environment(environ: Mapping[str, str] | None = None) -> bool:
    """Turn telemetry on when the app settings ask for it; safe to call more than once."""
    environ = os.environ if environ is None else environ
    if _active is not None or not enabled_by(environ):
        return _active is not None
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
        from opentelemetry import metrics, trace
    except ImportError:
        log.warning("%s is true but azure-monitor-opentelemetry is not installed", ENABLE_SETTING)
        return False
    if not worker_configured():
        # The distro reads the connection string itself; its azure_sdk instrumentation traces
        # SDK calls. With local auth off (infra/), ingestion signs in with the managed identity.
        # Logs are never sampled by trace: the alerts count audit lines.
        configure_azure_monitor(
            logger_name=SCOPE, enable_trace_based_sampling_for_logs=False, **_ingestion_credential(environ)
        )
    install(trace.get_tracer_provider(), metrics.get_meter_provider())
    return True


def worker_configured() -> bool:
    """True when the Python worker already ran configure_azure_monitor(): with
    PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true it does so before it imports the app, and a
    second call would add a second log exporter (every audit line sent twice)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    return isinstance(trace.get_tracer_provider(), TracerProvider)


def _ingestion_credential(environ: Mapping[str, str]) -> dict[str, Any]:
    """`credential=` for the distro when APPLICATIONINSIGHTS_AUTHENTICATION_STRING asks for
    Entra ID ("Authorization=AAD;ClientId=<id>"), as the Functions host itself reads it."""
    parts = dict(part.split("=", 1) for part in environ.get(AUTH_SETTING, "").split(";") if "=" in part)
    if parts.get("Authorization", "").upper() != "AAD":
        return {}
    from azure.identity import ManagedIdentityCredential

    return {"credential": ManagedIdentityCredential(client_id=parts.get("ClientId") or None)}


def install(tracer_provider: Any, meter_provider: Any) -> None:
    """Record spans and metrics through these providers (the distro's, or a test's in-memory ones)."""
    global _active
    meter = meter_provider.get_meter(SCOPE)
    _active = _Instruments(
        tracer=tracer_provider.get_tracer(SCOPE),
        runs=meter.create_counter("rotation.runs", unit="{run}", description="rotation runs by status"),
        steps=meter.create_counter(
            "rotation.steps", unit="{step}", description="target steps by kind, action and outcome"
        ),
        run_duration=meter.create_histogram(
            "rotation.run.duration", unit="s", description="wall time of a rotation run"
        ),
        throttled=meter.create_counter(
            "rotation.throttled", unit="{response}", description="429 answers from ARM or Key Vault"
        ),
        reverts=meter.create_counter(
            "rotation.reverts",
            unit="{consumer}",
            description="consumers found on an older version than written",
        ),
    )


def uninstall() -> None:
    global _active
    _active = None


def active() -> bool:
    return _active is not None


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    """A span around a run or a step; exceptions are recorded on it and re-raised."""
    instruments = _active
    if instruments is None:
        yield Span()
        return
    with instruments.tracer.start_as_current_span(
        name, attributes=_attributes(attributes), record_exception=False, set_status_on_exception=False
    ) as current:
        handle = Span(current)
        try:
            yield handle
        except BaseException as exc:
            handle.failed(exc)
            raise


def run_finished(status: str, seconds: float, source: str | None = None) -> None:
    if _active is not None:
        labels = _attributes({"status": status, "source": source})
        _active.runs.add(1, labels)
        _active.run_duration.record(seconds, labels)


def step_finished(kind: str, action: str, outcome: str) -> None:
    if _active is not None:
        _active.steps.add(1, {"kind": kind, "action": action, "outcome": outcome})


def throttled(host: str) -> None:
    if _active is not None:
        _active.throttled.add(1, {"host": host})


def consumer_reverted(kind: str) -> None:
    """A `consumer-reverted` incident (rotation/run/reverts.py), also an event on the run's span."""
    if _active is not None:
        _active.reverts.add(1, {"kind": kind})
        from opentelemetry import trace

        trace.get_current_span().add_event("consumer-reverted", {"rotation.kind": kind})


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """`rotation.`-prefixed, None dropped, only the types OpenTelemetry accepts."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        key = name if "." in name else f"rotation.{name}"
        out[key] = value if isinstance(value, str | bool | int | float) else str(value)
    return out
