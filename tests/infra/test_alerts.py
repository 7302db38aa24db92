"""The on-call alerts (issue 16 item 2; consumer-reverted: issue 26 item 5), checked offline on the parsed templates.

Each alert must exist under its name, notify the action group given to main.bicep, point at a
docs/runbook.md section that exists, and query a signal the product really emits: the audit
record kinds and outcomes in its queries are the ones rotation/ writes, and the storage names
are the ones storage.bicep deploys.
"""

from __future__ import annotations

import json
import re

from test_templates import REPO, app_settings, body, loop_of, main, module, ref, variable

RUNBOOK = REPO / "docs" / "runbook.md"
ALERTS = {
    "cmk-rotation-dead-letter-written",
    "cmk-rotation-poison-message",
    "cmk-rotation-run-failed-or-blocked",
    "cmk-rotation-key-expired-incident",
    "cmk-rotation-sweep-missing",
    "cmk-rotation-consumer-reverted",
}


def _unescape(text: str) -> str:
    """A Bicep single-quoted string's value (pycep keeps the escapes)."""
    return text.replace("\\\\", "\x00").replace("\\'", "'").replace("\x00", "\\")


def _render(template: dict, text: str, params: dict[str, str]) -> str:
    """Expand ${name} from the template's string variables, or from sample parameters."""

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name in params:
            return params[name]
        value = variable(template, name)
        assert isinstance(value, str), f"${{{name}}} is not a string variable"
        return _render(template, value, params)

    return re.sub(r"\$\{(\w+)\}", one, _unescape(text))


def _alerts() -> dict[str, dict]:
    tpl = module("alerts")
    params = {"storageAccountName": "stcmkrot0123", "sweepMissingWindow": "PT2H"}
    rendered = {}
    for alert in variable(tpl, "alerts"):
        entry = dict(alert)
        entry["query"] = _render(tpl, alert["query"], params)
        entry["description"] = _render(tpl, alert["description"], params)
        rendered[alert["name"]] = entry
    return rendered


def _runbook_sections() -> set[str]:
    return set(re.findall(r"^## (.+?)\s*$", RUNBOOK.read_text(encoding="utf-8"), re.M))


def test_the_five_alerts_are_defined_and_deployed():
    assert set(_alerts()) == ALERTS
    tpl = module("alerts")
    rules = tpl["resources"]["rules"]
    assert rules["type"] == "Microsoft.Insights/scheduledQueryRules"
    assert loop_of(rules)["detail"]["array_name"] == "alerts"
    props = body(rules)["properties"]
    assert body(rules)["kind"] == "LogAlert"
    assert props["enabled"] is True
    assert ref(body(rules)["name"]) == "alert.name" and ref(props["displayName"]) == "alert.name"
    (criterion,) = props["criteria"]["allOf"]
    assert (criterion["timeAggregation"], criterion["metricMeasureColumn"]) == ("Total", "hits")
    for alert in _alerts().values():
        assert alert["query"].rstrip().endswith("| summarize hits = count()"), alert["name"]
        assert 0 <= alert["severity"] <= 4
    assert "alerts" in main()["modules"]


def test_every_alert_notifies_the_action_group_given_to_main():
    props = body(module("alerts")["resources"]["rules"])["properties"]
    groups = props["actions"]["actionGroups"]["operator"]["operands"]
    assert groups["false_value"] == ["actionGroupId"]
    passed = body(main()["modules"]["alerts"])["params"]
    assert passed["actionGroupId"] == "alertActionGroupId"
    assert main()["parameters"]["alertActionGroupId"]["type"] == "string"
    for name in ("small", "large"):
        data = json.loads((REPO / "infra" / "params" / f"{name}.parameters.json").read_text(encoding="utf-8"))
        group = data["parameters"]["alertActionGroupId"]["value"]
        assert re.fullmatch(
            r"/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/Microsoft\.Insights/actionGroups/[^/]+",
            group,
        ), f"{name}: {group}"


def test_each_alert_points_at_a_runbook_section_that_exists():
    sections = _runbook_sections()
    for alert in _alerts().values():
        assert "docs/runbook.md" in alert["description"], alert["name"]
        named = re.findall(r'"(\d\. [^"]+)"', alert["description"])
        assert named, f"{alert['name']}: no runbook section named"
        for section in named:
            assert section in sections, f"{alert['name']}: runbook has no section {section!r}"


def test_runbook_alerts_table_maps_each_alert_to_its_section():
    text = RUNBOOK.read_text(encoding="utf-8")
    assert "## Alerts" in text
    table = text[text.index("## Alerts") :]
    table = table[: table.index("\n## ", 1)]
    rows = re.findall(r"^\| `(cmk-rotation-[a-z-]+)` \|([^|]+)\|", table, re.M)
    assert {name for name, _ in rows} == ALERTS
    sections = _runbook_sections()
    alerts = _alerts()
    for name, cell in rows:
        linked = re.findall(r"\[(\d\. [^\]]+)\]", cell)
        assert linked and set(linked) <= sections, f"{name}: {cell.strip()}"
        first = re.findall(r'"(\d\. [^"]+)"', alerts[name]["description"])[0]
        assert first == linked[0], f"{name}: the table and the alert text open different sections"


def test_log_alerts_read_the_audit_records_the_product_writes():
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "rotation").rglob("*.py"))
    assert 'json.dumps({"audit": record}' in source, 'audit log lines no longer start with {"audit":'
    alerts = _alerts()
    for name in (
        "cmk-rotation-run-failed-or-blocked",
        "cmk-rotation-key-expired-incident",
        "cmk-rotation-sweep-missing",
        "cmk-rotation-consumer-reverted",
    ):
        query = alerts[name]["query"]
        assert query.startswith('traces | where message startswith "{\\"audit\\":"'), name
        assert alerts[name]["onWorkspace"] is False, f"{name}: traces live in Application Insights"
        for kind in re.findall(r'a\.kind\) == "([a-z-]+)"', query):
            assert f'"{kind}"' in source, f"{name}: the product writes no {kind!r} record"
    run = alerts["cmk-rotation-run-failed-or-blocked"]["query"]
    assert 'in ("failed", "needs-attention")' in run
    statuses = re.findall(r'return "([a-z-]+)"', source)  # RunResult.status, wherever it lives
    assert {"failed", "needs-attention"} <= set(statuses), statuses


def test_consumer_reverted_fires_on_the_record_kind_the_revert_check_writes():
    from rotation.run.reverts import KIND

    alert = _alerts()["cmk-rotation-consumer-reverted"]
    assert f'tostring(a.kind) == "{KIND}"' in alert["query"] and KIND == "consumer-reverted"
    assert (alert["operator"], alert["threshold"]) == ("GreaterThan", 0)


def test_sweep_missing_fires_on_silence():
    sweep = _alerts()["cmk-rotation-sweep-missing"]
    assert (sweep["operator"], sweep["threshold"]) == ("LessThan", 1), "no row counts as a miss"
    assert sweep["window"] == "sweepMissingWindow"
    assert main()["parameters"]["sweepMissingWindow"]["default"] == "PT2H"
    assert 'tostring(a.outcome) == "done"' in sweep["query"], "a dry-run sweep is not a sweep"
    # the default schedule (hourly) fits twice in the window
    assert main()["parameters"]["rotationSweepSchedule"]["default"] == "0 0 * * * *"


def test_dead_letter_and_poison_alerts_watch_the_deployed_names():
    alerts = _alerts()
    storage = module("storage")
    dead = alerts["cmk-rotation-dead-letter-written"]
    poison = alerts["cmk-rotation-poison-message"]
    assert dead["onWorkspace"] and poison["onWorkspace"]
    assert f'"/{variable(storage, "deadLetterContainerName")}/"' in dead["query"]
    assert dead["query"].startswith("StorageBlobLogs") and '"PutBlob"' in dead["query"]
    assert "/rotation-requests-poison" in poison["query"] and "rotation-requests-poison" in variable(
        storage, "queueNames"
    )
    assert poison["query"].startswith("StorageQueueLogs") and '"PutMessage"' in poison["query"]
    for alert in (dead, poison):
        assert 'AccountName == "stcmkrot0123"' in alert["query"], "only this deployment's account"
    passed = body(main()["modules"]["alerts"])["params"]
    assert ref(passed["storageAccountName"]) == "storage.outputs.storageAccountName"
    assert ref(passed["workspaceId"]) == "monitoring.outputs.workspaceId"
    assert ref(passed["appInsightsId"]) == "monitoring.outputs.appInsightsId"


def test_storage_logs_reach_the_workspace():
    diag = module("storage-diagnostics")
    assert variable(diag, "categories") == ["StorageRead", "StorageWrite", "StorageDelete"]
    for name, scope in (("blobLogs", "blobService"), ("queueLogs", "queueService")):
        res = diag["resources"][name]
        assert res["type"] == "Microsoft.Insights/diagnosticSettings"
        assert body(res)["scope"] == scope
        assert body(res)["properties"] == {"workspaceId": "workspaceId", "logs": "logs"}
    passed = body(main()["modules"]["storageDiagnostics"])["params"]
    assert ref(passed["workspaceId"]) == "monitoring.outputs.workspaceId"


def test_traces_are_not_sampled():
    """A sampled trace could hide a failed run or fake a missing sweep. Under
    "telemetryMode": "OpenTelemetry" host.json's logging.applicationInsights section (its
    sampling exclusions among them) no longer applies (the Functions OpenTelemetry how-to), so
    it is gone rather than promising what it cannot do: the audit lines are log records the
    worker exports unsampled (tests/unit/test_telemetry_export.py), and ingestion sampling is off."""
    host = json.loads((REPO / "host.json").read_text(encoding="utf-8"))
    assert host["telemetryMode"] == "OpenTelemetry"
    assert "applicationInsights" not in host.get("logging", {})
    component = body(module("monitoring")["resources"]["appInsights"])["properties"]
    assert component["SamplingPercentage"] == 100


def test_the_worker_exports_the_logger_of_the_audit_lines():
    """The worker exports only PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME and its children: the
    audit lines' logger must be one of them, or every log alert goes silent."""
    from rotation.storage.audit.store import log
    from rotation.telemetry import SCOPE

    settings = app_settings()
    assert settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert settings["PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"] == SCOPE
    assert log.name.startswith(f"{SCOPE}."), log.name
