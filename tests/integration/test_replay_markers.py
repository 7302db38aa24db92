"""`deadletters list` shows a replay marker in the JSON contract's camelCase, and a replay
queued over HTTP shows how its run ended once the worker has run it."""

from __future__ import annotations

import json

from click.testing import CliRunner

import function_app
from devstack.functions_host import http_request
from rotation.doors.cli import main
from tests.integration.cli_support import wide_consoles
from tests.integration.test_replay import KEY, cli, estate, poison_a_request, seed_dead_letters


def listed(key: str = KEY) -> list[dict]:
    code, items = cli("deadletters", "list", "--key", key)
    assert code == 0, items
    return items


def test_the_replay_marker_is_camel_case_in_json(stack) -> None:
    estate(stack)
    stack.service()
    poison_a_request(stack)
    stack.admin.clear_faults()
    code, _ = cli("replay", "--yes")
    assert code == 0
    [item] = [i for i in listed() if i["replayed"]]
    assert set(item["replayed"]) == {"outcome", "runId", "operator", "replayedAt"}
    assert item["replayed"]["outcome"] == "succeeded" and item["replayed"]["operator"].startswith("cli:")


def test_a_replay_queued_over_http_shows_its_run_outcome(stack) -> None:
    estate(stack)
    stack.service()
    seed_dead_letters(stack)
    body = json.dumps({"key": KEY}).encode()
    answer = json.loads(function_app.replay_failed(http_request("POST", "/api/replay", body=body)).get_body())
    [run_id] = answer["runIds"]
    [queued] = [i for i in listed() if i["replayed"]]
    assert queued["replayed"]["outcome"] == "queued" and queued["replayed"]["runId"] == run_id
    dispatcher = stack.dispatcher(function_app.run_rotation)
    dispatcher.run_until_idle(timeout=60)
    dispatcher.close()
    [done] = [i for i in listed() if i["replayed"]]
    assert done["replayed"]["outcome"] == "succeeded"
    with wide_consoles():
        table = CliRunner().invoke(main, ["deadletters", "list", "--key", KEY], catch_exceptions=False)
    assert "succeeded by " in table.stdout and "queued by" not in table.stdout
