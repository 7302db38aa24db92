"""The Azure Monitor workbook (issue 28 item 1), checked offline.

The workbook content is rendered the way the deployment renders it (workbook.bicep's
loadTextContent and replace chain, evaluated on the parsed template with sample values), then:
- it is valid workbook JSON (tests/infra/workbook.schema.json, the serialized content format);
- every query reads only tables whose records are never sampled, and names only columns those
  tables have, audit record kinds and fields the app writes, metric names and dimensions the
  app records, and span names the app opens (tests/infra/emitted.py gathers those from the code
  and from the telemetry the app records, not by hand);
- main.bicep deploys it with the monitoring resources.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest
from emitted import audit_fields, audit_kinds, metrics, run_statuses, span_names
from test_templates import DESIGN, MODULES, REPO, body, main, module, ref, variable

SCHEMA = json.loads((REPO / "tests" / "infra" / "workbook.schema.json").read_text(encoding="utf-8"))
SAMPLE = {
    "appInsightsId": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-cmk/providers/microsoft.insights/components/appi-cmkrot",
    "workspaceId": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-cmk/providers/microsoft.operationalinsights/workspaces/log-cmkrot",
    "storageAccountName": "stcmkrot0123",
}

# The columns of each table a query may read (Application Insights and Azure Monitor table
# references). Only tables whose rows are never sampled: traces carry the audit records and
# customMetrics the rotation.* metrics (see rotation/telemetry.py: logs and metrics are not
# sampled), the storage logs come from diagnostic settings. Spans (dependencies) are sampled,
# so no chart counts them.
COLUMNS = {
    "traces": {"timestamp", "message", "severityLevel", "customDimensions", "operation_Id", "itemCount"},
    "customMetrics": {
        "timestamp",
        "name",
        "value",
        "valueSum",
        "valueCount",
        "valueMin",
        "valueMax",
        "customDimensions",
    },
    "StorageBlobLogs": {
        "TimeGenerated",
        "AccountName",
        "OperationName",
        "StatusCode",
        "StatusText",
        "ObjectKey",
        "Uri",
    },
    "StorageQueueLogs": {
        "TimeGenerated",
        "AccountName",
        "OperationName",
        "StatusCode",
        "StatusText",
        "ObjectKey",
        "Uri",
    },
}
SAMPLED = {"dependencies": {"timestamp", "name", "duration", "success", "customDimensions", "operation_Id"}}
# Query language words the queries use (operators, functions, keywords).
KQL = {
    "where",
    "extend",
    "summarize",
    "by",
    "project",
    "order",
    "asc",
    "desc",
    "union",
    "and",
    "or",
    "not",
    "in",
    "between",
    "startswith",
    "contains",
    "count",
    "dcount",
    "sum",
    "arg_max",
    "bin",
    "tostring",
    "toint",
    "parse_json",
    "iff",
    "isnotempty",
    "isempty",
    "isfuzzy",
    "true",
    "false",
}
# Columns that are strings although they hold numbers (Azure Monitor table reference: a storage
# request's StatusCode may be "Unknown"): compared as numbers only through toint().
TEXT_NUMBERS = {"StatusCode"}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
PLACEHOLDER = re.compile(r"\{[A-Za-z]\w*(?::\w+)?\}")


# ---------------------------------------------------------------- rendering
def _evaluate(expr: Any, values: dict[str, str]) -> str:
    """workbook.bicep's content expression: loadTextContent, replace, parameters."""
    if isinstance(expr, str):
        if expr in values:
            return values[expr]
        return _evaluate(variable(module("workbook"), expr), values)
    function = expr["function"]
    args = function["parameters"]
    if function["type"] == "load_text_content":
        return (MODULES / args["file_path"]).resolve().read_text(encoding="utf-8")
    if function["type"] == "replace":
        original = _evaluate(args["original_string"], values)
        return original.replace(args["old_string"], _evaluate(args["new_string"], values))
    raise AssertionError(f"workbook.bicep uses {function['type']}(), which this test cannot evaluate")


def rendered() -> dict:
    props = body(module("workbook")["resources"]["workbook"])["properties"]
    text = _evaluate(props["serializedData"], SAMPLE)
    assert "__" not in text, "a placeholder is left in the deployed workbook"
    return json.loads(text)


def queries(workbook: dict) -> list[dict]:
    found = []
    for item in workbook["items"]:
        if item["type"] == 3:
            found.append(item)
        if item["type"] == 12:
            found.extend(queries(item["content"]))
    return found


# ---------------------------------------------------------------- the name check
def _in_list(text: str) -> list[str]:
    return [s.strip('"') for s in STRING.findall(text)]


def problems_of(query: str) -> list[str]:
    """Names in one query that the app (or the table) does not have."""
    out: list[str] = []
    code = PLACEHOLDER.sub("1h", re.sub(r"//[^\n]*", "", STRING.sub('""', query)))
    tables = set(re.findall(r"\(\s*([A-Za-z]\w*)\s*\|", code))
    first = re.match(r"\s*([A-Za-z]\w*)", code)
    if first and first.group(1) != "union":
        tables.add(first.group(1))
    known = {**COLUMNS, **SAMPLED}
    for table in sorted(tables):
        if table not in known:
            out.append(f"table {table} is not one the app's records reach")
        elif table not in COLUMNS:
            out.append(f"table {table} is sampled: its counts would be wrong")
    # audit records: kinds and fields
    for value in re.findall(r'(?:a\.kind\)|\brecordKind)\s*(?:==|!=)\s*("(?:[^"\\]|\\.)*")', query):
        out += _kind_problems([value.strip('"')])
    for listed in re.findall(r"(?:a\.kind\)|\brecordKind)\s+in\s*\(([^)]*)\)", query):
        out += _kind_problems(_in_list(listed))
    if '"run-finished"' in query:
        compared = re.findall(r'a\.outcome\)\s*(?:==|!=)\s*("[^"]*")', query)
        compared += [
            v
            for listed in re.findall(r"a\.outcome\)\s*!?in\s*\(([^)]*)\)", query)
            for v in STRING.findall(listed)
        ]
        for status in (v.strip('"') for v in compared):
            if status not in run_statuses() | _designed_statuses():
                out.append(f"no run ends with status {status!r}")
    for field in re.findall(r"\ba\.(\w+)", code):
        if field not in audit_fields():
            out.append(f"audit records have no field {field!r}")
    # metrics and spans
    named = _in_list(" ".join(re.findall(r'\bname\s*==\s*"[^"]*"', query)))
    for name in named:
        if "customMetrics" in tables and name not in metrics():
            out.append(f"the app records no metric {name!r}")
        if "dependencies" in tables and name not in span_names():
            out.append(f"the app opens no span {name!r}")
    dimensions = set().union(*(metrics().get(n, frozenset()) for n in named)) if named else set()
    for key in re.findall(r'customDimensions\["([^"]+)"\]', query):
        if "customMetrics" in tables and key not in dimensions:
            out.append(f"metric {named} has no dimension {key!r}")
    for column in sorted(TEXT_NUMBERS):
        if re.search(rf"(?<![\w(]){column}\s*(?:between|[<>])", code):
            out.append(f"{column} is a string: compare toint({column})")
    # every other word: a column of the tables, a name the query defines, or query language
    defined = set(re.findall(r"\b([A-Za-z_]\w*)\s*=(?!=)", code)) | {"a"}
    columns = set().union(*(known.get(t, set()) for t in tables)) if tables else set()
    words = set(re.findall(r"(?<![\w.])([A-Za-z_]\w*)", re.sub(r"\ba(\.\w+)+", "a", code)))
    for word in sorted(words - KQL - defined - columns - tables):
        out.append(f"{word!r} is no column of {sorted(tables)}")
    return out


def _documented_not_written() -> set[str]:
    """Kinds infra/README.md's workbook table says no code writes yet."""
    readme = (REPO / "infra" / "README.md").read_text(encoding="utf-8")
    return {
        k
        for line in readme.splitlines()
        if "no code writes it yet" in line
        for k in re.findall(r"audit `([a-z-]+)`", line)
    }


def _designed_not_emitted() -> set[str]:
    """Kinds DESIGN.md section 7 names that the app does not write yet (charts stay empty).
    Without DESIGN.md (it lives beside the repository), the README's word for them."""
    if not DESIGN.exists():
        return _documented_not_written() - audit_kinds()
    named = set(re.findall(r"audited as `([a-z-]+)`", DESIGN.read_text(encoding="utf-8")))
    return named - audit_kinds()


def _designed_statuses() -> set[str]:
    """Run statuses DESIGN.md section 7 names (some, like `interrupted`, may not be written yet)."""
    if not DESIGN.exists():
        return set()
    listed = re.search(r"Run statuses: (.*?)\(", DESIGN.read_text(encoding="utf-8"), re.S)
    return set(re.findall(r"`([a-z-]+)`", listed.group(1))) if listed else set()


def _kind_problems(kinds: list[str]) -> list[str]:
    allowed = audit_kinds() | _designed_not_emitted()
    return [f"the app writes no audit record of kind {k!r}" for k in kinds if k not in allowed]


# ---------------------------------------------------------------- tests
def test_main_deploys_the_workbook_next_to_the_monitoring_resources():
    declared = main()["modules"]["workbook"]
    assert declared["detail"]["path"] == "modules/workbook.bicep"
    passed = body(declared)["params"]
    assert ref(passed["appInsightsId"]) == "monitoring.outputs.appInsightsId"
    assert ref(passed["workspaceId"]) == "monitoring.outputs.workspaceId"
    assert ref(passed["storageAccountName"]) == "storage.outputs.storageAccountName"
    assert passed["displayName"] == "CMK rotation (${appName})", "one workbook name per deployment"
    resource = module("workbook")["resources"]["workbook"]
    assert resource["type"] == "Microsoft.Insights/workbooks"
    props = body(resource)["properties"]
    assert body(resource)["kind"] == "shared" and props["category"] == "workbook"
    assert props["sourceId"] == "appInsightsId", "the workbook opens from the Application Insights resource"


def test_the_deployed_content_is_valid_workbook_json():
    workbook = rendered()
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(workbook)
    ]
    assert not errors, errors
    names = [item["name"] for item in workbook["items"]]
    assert len(names) == len(set(names)), "item names must be unique"
    params = {
        p["name"] for item in workbook["items"] if item["type"] == 9 for p in item["content"]["parameters"]
    }
    for item in queries(workbook):
        content = item["content"]
        used = {m.split(":")[0] for m in re.findall(r"\{([A-Za-z]\w*(?::\w+)?)\}", content["query"])}
        assert used | {content.get("timeContextFromParameter", "TimeRange")} <= params, item["name"]
        expected = (
            SAMPLE["workspaceId"] if "workspaces" in content["resourceType"] else SAMPLE["appInsightsId"]
        )
        assert content["crossComponentResources"] == [expected], item["name"]


@pytest.mark.parametrize(
    "broken",
    [
        lambda w: w.pop("version"),
        lambda w: w["items"][2]["content"].pop("query"),
        lambda w: w["items"][2].update(type=7),
        lambda w: w["items"][1]["content"]["parameters"][0].update(id="TimeRange"),
        lambda w: w["items"][2]["content"].update(crossComponentResources=["appi-cmkrot"]),
    ],
)
def test_the_schema_refuses_broken_workbooks(broken):
    workbook = copy.deepcopy(rendered())
    broken(workbook)
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(workbook))


def test_the_workbook_shows_what_the_platform_team_asked_for():
    titles = " | ".join(item["content"].get("title", "") for item in queries(rendered())).lower()
    for part in (
        "runs by status",
        "consumers per key version",
        "stale consumers",
        "dead letters",
        "poison",
        "429",
        "reverted",
    ):
        assert part in titles, part


def test_every_query_names_only_what_the_app_emits():
    workbook = rendered()
    found = {item["name"]: problems_of(item["content"]["query"]) for item in queries(workbook)}
    assert not any(found.values()), {k: v for k, v in found.items() if v}


def test_the_emitted_names_come_from_the_app():
    assert {"succeeded", "failed", "needs-attention", "soaking"} <= run_statuses()
    assert {"run-finished", "plan-step", "verified", "sweep-finished", "poison-moved"} <= audit_kinds()
    assert {"lease-taken", "lease-taken-over"} <= audit_kinds(), "both branches of a conditional kind"
    assert {"rotation.run", "rotation.step"} <= span_names()
    assert metrics()["rotation.throttled"] == {"host"}
    assert "rotation.status" in metrics()["rotation.runs"]


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ('customMetrics | where name == "rotation.throttle" | summarize sum(valueSum)', "no metric"),
        (
            'customMetrics | where name == "rotation.throttled" | summarize sum(valueSum) by tostring(customDimensions["hostname"])',
            "no dimension",
        ),
        (
            'traces | extend a = parse_json(message).audit | where tostring(a.kind) == "run-done"',
            "no audit record of kind",
        ),
        (
            'traces | extend a = parse_json(message).audit | where tostring(a.kind) in ("plan-step", "planned")',
            "no audit record of kind",
        ),
        ("traces | extend a = parse_json(message).audit | project tostring(a.status)", "no field"),
        ("traces | summarize count() by bin(TimeGenerated, 1h)", "no column"),
        ("AppTraces | summarize count()", "not one the app's records reach"),
        ("StorageBlobLogs | where StatusCode between (200 .. 299) | summarize count()", "is a string"),
        (
            'traces | extend a = parse_json(message).audit | where tostring(a.kind) == "run-finished" and tostring(a.outcome) in ("failed", "broken")',
            "no run ends with status 'broken'",
        ),
        ('dependencies | where name == "rotation.step" | summarize count()', "sampled"),
        ('dependencies | where name == "rotation.stage" | summarize count()', "no span"),
    ],
)
def test_the_check_refuses_names_the_app_does_not_emit(query, complaint):
    assert any(complaint in p for p in problems_of(query)), problems_of(query)


def test_reverted_consumers_are_charted_before_the_app_writes_them():
    """DESIGN.md section 7 names `consumer-reverted`; no code writes it yet (noted in the
    workbook): the chart filters on it and shows its no-data message until then."""
    (item,) = [i for i in queries(rendered()) if i["name"] == "reverted-consumers"]
    assert '"consumer-reverted"' in item["content"]["query"]
    if "consumer-reverted" not in audit_kinds():
        assert "consumer-reverted" in _designed_not_emitted()
        assert "consumer-reverted" in _documented_not_written(), "infra/README.md says it is not written yet"
        assert "not written yet" in item["content"]["noDataMessage"]


def test_audit_charts_count_a_re_chained_record_once():
    """The trail logs a record again when it re-chains it after another writer
    (`{"audit": ..., "rechained": true}`): a chart of audit records counts runs or the latest
    record per target, never lines."""
    trail = (REPO / "rotation" / "storage" / "audit" / "trail.py").read_text(encoding="utf-8")
    logged_twice = '"rechained": True' in trail
    for item in queries(rendered()):
        query = item["content"]["query"]
        if "parse_json(message).audit" in query and logged_twice:
            assert "dcount(" in query or "arg_max(" in query, item["name"]


def test_dead_letter_and_poison_chart_reads_the_deployed_names():
    (item,) = [i for i in queries(rendered()) if i["name"] == "dead-letters-and-poison"]
    query = item["content"]["query"]
    storage = module("storage")
    assert f'"/{variable(storage, "deadLetterContainerName")}/"' in query
    assert '"/rotation-requests-poison"' in query and "rotation-requests-poison" in variable(
        storage, "queueNames"
    )
    assert query.count(f'AccountName == "{SAMPLE["storageAccountName"]}"') == 2
    assert item["content"]["resourceType"] == "microsoft.operationalinsights/workspaces"


def test_the_alert_queries_pass_the_same_check():
    """The five alerts (alerts.bicep) read the same records: the same check holds them."""
    from test_alerts import _alerts

    found = {name: problems_of(alert["query"]) for name, alert in _alerts().items()}
    assert not any(found.values()), {k: v for k, v in found.items() if v}
