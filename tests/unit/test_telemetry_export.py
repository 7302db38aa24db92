"""What reaches Application Insights when the app runs with telemetry on (issue 28 item 3).

Each test starts a real process (tests/unit/telemetry_process.py) with the real Azure Monitor
distro and, with --worker, the Python worker's own telemetry start-up; its exporters send to a
loopback ingestion endpoint this test serves, so what is counted is what Application Insights
would receive. No network: statsbeat, the control plane and the resource detectors that call
out are off, and every endpoint in the connection string is 127.0.0.1.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rotation import telemetry

REPO = Path(__file__).resolve().parents[2]
# The worker start-up is the real one: azure-functions-runtime, the 3.13+ worker the app ships.
# On Python 3.12 the platform brings its own worker (not installable here): those cases skip.
needs_worker = pytest.mark.skipif(
    importlib.util.find_spec("azure_functions_runtime") is None,
    reason="azure-functions-runtime (the Python 3.13+ worker) is not installed on this Python",
)


class _Ingestion(BaseHTTPRequestHandler):
    envelopes: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        items: list[dict[str, Any]] = []
        if self.path.startswith("/v2.1/track") or self.path.startswith("/v2/track"):
            text = body.decode("utf-8").strip()
            parsed = (
                json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines() if x]
            )
            items = parsed if isinstance(parsed, list) else [parsed]
            self.server.envelopes.extend(items)  # type: ignore[attr-defined]
        answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def ingestion() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingestion)
    server.envelopes = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_app(server: ThreadingHTTPServer, tmp_path: Path, *args: str, **env: str) -> list[dict[str, Any]]:
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/"
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),  # the exporters' offline storage, if they ever need it
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={endpoint};LiveEndpoint={endpoint}"
        ),
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "azure_functions",  # no instance metadata calls
        **env,
    }
    start = len(server.envelopes)  # type: ignore[attr-defined]
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit.telemetry_process", *args],
        cwd=REPO,
        env=environ,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    server.stdout = done.stdout  # type: ignore[attr-defined]
    return list(server.envelopes[start:])  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def worker_default(
    ingestion: ThreadingHTTPServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[dict[str, Any]], str]:
    """What the app sends under the worker with the worker's defaults, and what it printed: one
    process for the two tests that read it (each start of the distro costs seconds)."""
    envelopes = run_app(ingestion, tmp_path_factory.mktemp("worker"), "--worker")
    return envelopes, ingestion.stdout  # type: ignore[attr-defined]


def messages(envelopes: list[dict[str, Any]]) -> list[str]:
    return [
        e["data"]["baseData"].get("message", "") for e in envelopes if e["data"]["baseType"] == "MessageData"
    ]


def audit_lines(envelopes: list[dict[str, Any]]) -> list[str]:
    return [m for m in messages(envelopes) if m.startswith('{"audit":')]


def spans_named(envelopes: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in envelopes
        if e["data"]["baseType"] in ("RemoteDependencyData", "RequestData")
        and e["data"]["baseData"]["name"] == name
    ]


@needs_worker
def test_the_app_does_not_configure_the_distro_a_second_time_after_the_worker(worker_default):
    """PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true makes the worker call
    configure_azure_monitor() before it imports function_app.py; a second call from the app
    adds a second log exporter, so every audit line (and the alerts' counts) would arrive twice."""
    envelopes, stdout = worker_default
    assert len(audit_lines(envelopes)) == 1, audit_lines(envelopes)
    # the distro's default sampler (rate-limited) may drop the span; it never sends it twice
    assert len(spans_named(envelopes, "rotation.run")) <= 1
    # and the host is told so: it does not export the worker's logs a second time
    assert '{"workerOpenTelemetryEnabled": true}' in stdout.splitlines()


def test_without_the_worker_the_app_configures_the_distro_itself(ingestion, tmp_path):
    envelopes = run_app(ingestion, tmp_path)
    assert len(audit_lines(envelopes)) == 1
    assert len(spans_named(envelopes, "rotation.run")) <= 1


@needs_worker
def test_audit_records_arrive_whatever_the_trace_sampler_drops(ingestion, tmp_path):
    """The alerts and the workbook count audit lines (logs), never spans: with a sampler that
    drops every trace the failed run's record still arrives, once."""
    envelopes = run_app(ingestion, tmp_path, "--worker", OTEL_TRACES_SAMPLER="always_off")
    assert not spans_named(envelopes, "rotation.run"), "the sampler should have dropped the span"
    (line,) = audit_lines(envelopes)
    assert json.loads(line)["audit"]["outcome"] == "failed"


@needs_worker
def test_with_the_deployed_logger_name_only_the_apps_logs_are_exported(ingestion, tmp_path, worker_default):
    """infra/ sets PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME to the app's logger: the audit lines
    arrive, azure-core's line per HTTP request does not (the worker's default, the root logger,
    would send every one)."""
    envelopes = run_app(
        ingestion, tmp_path, "--worker", PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME=telemetry.SCOPE
    )
    assert len(audit_lines(envelopes)) == 1
    assert not [m for m in messages(envelopes) if m.startswith("Request URL")]
    everything, _ = worker_default
    assert [m for m in messages(everything) if m.startswith("Request URL")], "the root logger sends it"
