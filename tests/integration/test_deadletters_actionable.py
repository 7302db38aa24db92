"""Issue 23 item 4: dead letters an on-call engineer can act on. `deadletters list` shows each
item's id and run and its whole cause; `deadletters show ID` gives everything and the exact
replay command; `--not-replayed` filters; a poison request without an event id is named by its
request id everywhere; `deadletters discard ID --reason` is audited and replay leaves it out."""

from __future__ import annotations

import json

import function_app
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.storage.queue import enqueue
from tests import scenarios as s
from tests.integration.cli_support import KEY, OLD, load_estate, run
from tests.integration.test_functions import call
from tests.integration.test_replay import dead_letter, upload

EVENT_ID = "dl-batch-1"


def failed_work(stack) -> str:
    """A dead letter (event id EVENT_ID) and a poison request without an event id, which failed
    on a registry refusing writes (403 AuthorizationFailed); returns the request id."""
    load_estate(stack, [s.registry("reg1", s.key_id("acr-cmk", OLD))])
    service = stack.service()  # creates the containers Event Grid writes into
    event = s.event_grid_event("KeyNewVersionCreated", "acr-cmk", s.vid("new"), event_id=EVENT_ID)
    upload(stack, "2026/11/20/21/0b7c1e9a-1111-4c1e-9f00-aaaaaaaaaaaa.json", [dead_letter(event)])
    stack.admin.add_fault(method="PATCH", pathRegex="registries/reg1$", status=403)
    request = new_request(parse_key_id(KEY), "http", "tester")  # HTTP: no event id
    enqueue(service.requests_queue, request)
    dispatcher = stack.dispatcher(function_app.run_rotation, max_dequeue_count=2)
    assert len(dispatcher.run_until_idle(timeout=60).poisoned) == 1
    dispatcher.close()
    return request.request_id


def items(*args: str) -> list[dict]:
    result = run("deadletters", "list", "-o", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_list_shows_ids_runs_and_the_whole_cause_in_table_and_json(stack) -> None:
    request_id = failed_work(stack)
    [dead, poison] = items()
    assert dead["eventId"] == EVENT_ID and dead["requestId"] is None and dead["runId"] is None
    assert poison["eventId"] is None and poison["requestId"] == request_id
    assert poison["runId"] == request_id  # the runbook's `audit show <runId>` starts here
    assert "AuthorizationFailed" in poison["cause"]
    table = run("deadletters", "list")
    assert table.exit_code == 0
    assert request_id[:8] in table.stdout and EVENT_ID[:8] in table.stdout
    flat = " ".join(table.stdout.replace("│", " ").split())
    assert "…" not in table.stdout
    assert poison["cause"].split()[-1] in flat  # the cause's last word: nothing cut


def test_show_gives_everything_and_the_exact_replay_command(stack) -> None:
    request_id = failed_work(stack)
    shown = run("deadletters", "show", request_id[:8], "-o", "json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["requestId"] == request_id and data["runId"] == request_id
    assert data["replayCommand"] == f"rotation replay --event-id {request_id} --yes"
    table = run("deadletters", "show", request_id)
    assert table.exit_code == 0
    assert f"rotation audit show {request_id}" in table.stdout
    assert data["replayCommand"] in table.stdout
    assert " ".join(data["cause"].split()) in " ".join(table.stdout.split())
    assert json.loads(run("deadletters", "show", EVENT_ID, "-o", "json").stdout)["eventId"] == EVENT_ID
    for missing in ("nothing-like-this", ""):
        refused = run("deadletters", "show", missing)
        assert refused.exit_code == 2 and "no failed item" in refused.stderr


def test_the_replay_command_show_prints_replays_that_item_and_not_replayed_filters(stack) -> None:
    request_id = failed_work(stack)
    stack.admin.clear_faults()
    command = json.loads(run("deadletters", "show", request_id, "-o", "json").stdout)["replayCommand"]
    replayed = run(*command.split()[1:], "-o", "json")
    assert replayed.exit_code == 0, replayed.output
    [outcome] = json.loads(replayed.stdout)
    assert outcome["action"] == "replayed" and outcome["status"] == "succeeded"
    assert [i["eventId"] for i in items("--not-replayed")] == [EVENT_ID]
    assert len(items()) == 2
    table = run("deadletters", "list", "--not-replayed").stdout
    assert EVENT_ID[:8] in table and request_id[:8] not in table


def test_discard_is_audited_marked_and_left_out_of_replay(stack) -> None:
    request_id = failed_work(stack)
    for output in ("table", "json"):
        refused = run("deadletters", "discard", request_id, "--reason", "  ", "-o", output)
        assert refused.exit_code == 2 and "--reason" in refused.stderr
    done = run("deadletters", "discard", request_id[:8], "--reason", "typo in the key name", "-o", "json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["discarded"] is True
    records, _ = stack.service().audit.query(top=100)
    [record] = [r for r in records if r["kind"] == "deadletter-discarded"]
    assert record["message"] == "typo in the key name" and record["detail"]["requestId"] == request_id
    poison = next(i for i in items() if i["requestId"] == request_id)
    assert poison["discarded"] is True and poison["replayed"]["reason"] == "typo in the key name"
    assert "discarded by" in run("deadletters", "list").stdout
    assert [i["eventId"] for i in items("--not-replayed")] == [EVENT_ID]
    stack.admin.clear_faults()
    replayed = run("replay", "--yes", "-o", "json")
    assert replayed.exit_code == 0, replayed.output
    actions = {o["item"]: o["action"] for o in json.loads(replayed.stdout)}
    assert sorted(actions.values()) == ["replayed", "skipped-discarded"]
    assert stack.writes() and all("reg1" in w["path"] for w in stack.writes())
    forced = run("replay", "--event-id", request_id, "--yes", "--force", "-o", "json")
    assert [o["action"] for o in json.loads(forced.stdout)] == ["replayed"]
    again = next(i for i in items() if i["requestId"] == request_id)
    assert again["discarded"] is False and "reason" not in again["replayed"]


def test_over_http_a_poison_request_is_chosen_by_its_request_id_and_a_discarded_one_skipped(stack) -> None:
    request_id = failed_work(stack)
    status, body, _ = call(
        function_app.replay_failed, "POST", "/api/replay", {"eventIds": [request_id], "dryRun": True}
    )
    assert status == 202 and [i["requestId"] for i in body["items"]] == [request_id]
    assert body["items"][0]["action"] == "would-replay"
    assert run("deadletters", "discard", request_id, "--reason", "never existed").exit_code == 0
    status, body, _ = call(function_app.replay_failed, "POST", "/api/replay", {"eventIds": [request_id]})
    assert status == 202 and body["runIds"] == []
    assert [i["action"] for i in body["items"]] == ["skipped-discarded"]


def test_replay_takes_the_short_id_the_list_shows(stack) -> None:
    request_id = failed_work(stack)
    stack.admin.clear_faults()
    for output in ("table", "json"):
        dry = run("replay", "--event-id", request_id[:8], "--dry-run", "-o", output)
        assert dry.exit_code == 0, dry.output
    [outcome] = json.loads(run("replay", "--event-id", request_id[:8], "--dry-run", "-o", "json").stdout)
    assert outcome["requestId"] == request_id and outcome["action"] == "would-replay"
    missing = run("replay", "--event-id", "zzzzzzzz", "--dry-run")
    assert missing.exit_code == 2 and "zzzzzzzz" in missing.stderr
