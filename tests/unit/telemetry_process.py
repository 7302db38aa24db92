"""One function-app process with telemetry on, for tests/unit/test_telemetry_export.py.

Run as `python -m tests.unit.telemetry_process [--worker]`: with --worker it first does what
the Python worker (azure-functions-runtime, as deployed) does at start when the app setting
PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY is true: its own configure_azure_monitor(). Then
the app starts as function_app.py starts it, a run fails and writes its audit record, and the
process exits: the OpenTelemetry providers flush at exit to the ingestion endpoint named in
APPLICATIONINSIGHTS_CONNECTION_STRING (the test's loopback server).
"""

from __future__ import annotations

import json
import logging
import sys

from rotation import telemetry
from rotation.storage.audit.store import log as audit_log


def main(argv: list[str]) -> None:
    logging.getLogger().setLevel(logging.INFO)  # the worker's level for app logs
    if "--worker" in argv:
        from azure_functions_runtime.otel import initialize_azure_monitor, otel_manager

        initialize_azure_monitor()
        # what the worker then tells the host (capability WorkerOpenTelemetryEnabled): the host
        # stops exporting the logs it forwards, so they are not sent twice
        print(json.dumps({"workerOpenTelemetryEnabled": otel_manager.get_azure_monitor_available()}))
    telemetry.configure_from_environment()
    with telemetry.span("rotation.run", run_id="run-1") as run:
        record = {"kind": "run-finished", "runId": "run-1", "outcome": "failed"}
        audit_log.info(json.dumps({"audit": record}))  # the line AuditTrail.record writes
        # what azure-core's HTTP logging policy writes for every request, at INFO
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("Request URL: 'https://x'")
        run.set(status="failed")
    telemetry.run_finished("failed", 0.5, "event")


if __name__ == "__main__":
    main(sys.argv[1:])
