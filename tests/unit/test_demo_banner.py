"""`make demo`'s closing line tells the truth (issue 9 item 9): converged runs that leave a
person-needed step say which one and where the runbook covers it."""

from __future__ import annotations

from typing import Any

from tools.demo import closing_line

REGISTRY = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/contosobuild"
GROUP = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/nightly-report"
)


def run(key: str, status: str, *steps: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "keyId": key,
        "status": status,
        "steps": [{"target": t, "action": a, "outcome": o} for t, a, o in steps],
    }


def test_a_report_only_group_is_named_in_the_banner() -> None:
    runs = [
        run("k", "needs-attention", (REGISTRY, "update", "verified"), (GROUP, "redeploy-required", "skipped"))
    ]
    code, line = closing_line(runs, audit_ok=True)
    assert code == 0
    assert "converged" in line and "1 step needs a person: nightly-report redeploy-required" in line
    assert "docs/runbook.md" in line


def test_only_the_last_run_of_a_key_counts_and_failures_are_not_converged() -> None:
    earlier = run("k", "needs-attention", (GROUP, "redeploy-required", "skipped"))
    later = run("k", "succeeded", (REGISTRY, "already-current", "skipped"))
    assert closing_line([earlier, later], audit_ok=True) == (
        0,
        "[bold green]converged[/]: nothing left for a person",
    )
    failed = run("k", "failed", (REGISTRY, "update", "failed"))
    assert closing_line([failed], audit_ok=True)[0] == 1
    assert closing_line([later], audit_ok=False)[0] == 1


def sample_state() -> dict[str, Any]:
    import json

    from emulator import scenario
    from emulator.app import EmulatorApp
    from tools.demo import SCENARIO

    app = EmulatorApp()
    app.load_scenario(json.loads(SCENARIO.read_text()))
    return scenario.dump(app.world)


def rendered(renderable: Any, width: int = 200) -> str:
    import io

    from rich.console import Console

    sink = io.StringIO()
    console = Console(file=sink, width=width, color_system=None)
    console.print(renderable)
    return sink.getvalue()


def test_the_estate_table_shows_every_consumer_of_every_kind() -> None:
    from tools.demo import estate

    state = sample_state()
    resources = [
        r for v in state.values() if isinstance(v, list) for r in v if isinstance(r, dict) and "id" in r
    ]
    table = estate(state)
    assert table.row_count == len(resources) > 12
    text = rendered(table)
    for kind in (
        "servicebus",
        "eventhub",
        "sqlserver",
        "diskencryptionset",
        "aks",
        "kusto",
        "cosmos",
        "postgresflexible",
        "mysqlflexible",
    ):
        assert kind in text
    assert "des-regulated" in text and "tde-hsm-cmk" in text and "versionless" in text


def test_the_closing_banner_is_never_cut_at_the_terminal_width(monkeypatch) -> None:
    import io

    from rich.console import Console

    import tools.demo as demo

    runs = [run("k", "needs-attention", (GROUP, "redeploy-required", "skipped"))]
    sink = io.StringIO()
    monkeypatch.setattr(demo, "console", Console(file=sink, width=60, color_system=None))
    assert demo.verdict(runs, audit_ok=True) == 0
    printed = sink.getvalue()
    assert "1 step needs a person: nightly-report redeploy-required, see docs/runbook.md section 2" in printed


def test_the_call_count_leaves_out_identity_tokens_and_refused_writes() -> None:
    from tools.demo import call_summary

    calls = [
        {"method": "GET", "host": "contoso-cmk.vault.azure.net", "status": 200},
        {"method": "POST", "host": "contoso-cmk.vault.azure.net", "status": 200},
        {"method": "PATCH", "host": "management.azure.com", "status": 200},
        {"method": "PATCH", "host": "management.azure.com", "status": 403},
        {"method": "PATCH", "host": "management.azure.com", "status": 0, "dropped": True},
        {"method": "GET", "host": "identity", "status": 200},
        {"method": "POST", "host": "eventgrid-delivery", "status": 200},
    ]
    assert call_summary(calls) == "6 calls to Key Vault, ARM and the app's webhook, 2 writes accepted"


def test_the_steps_table_keeps_fixed_words_whole_at_the_demo_width() -> None:
    from tools.demo import steps_table

    steps: list[dict[str, Any]] = [
        {"target": REGISTRY, "action": "already-current", "outcome": "skipped", "fromVersion": None},
        {
            "target": GROUP,
            "action": "update",
            "outcome": "verified",
            "fromVersion": "0a1b2c3d4e5f40718293a4b5c6d7e8f9",
            "toVersion": "7c8d9e0f1a2b43c4d5e6f708192a3b4c",
            "message": "moved to the desired version after a long and winding explanation",
        },
    ]
    text = rendered(steps_table(steps), width=120)  # the demo's console is never narrower
    seen = set(text.replace("│", " ").split())
    assert {"already-current", "versionless", "0a1b2c3d", "7c8d9e0f", "verified", "skipped"} <= seen
    assert {"registry", "containergroup"} <= seen
