"""Ctrl-C during `rotation replay --yes`: the replayed run under way closes `interrupted` with its
writes recorded, no further item starts, the command exits 130 saying how many items are left,
and the next replay takes them, the interrupted one too (real SIGINT to `python -m rotation replay` on the local stack)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

from tests import scenarios as s
from tests.integration.cli_support import NEW, run
from tests.integration.test_interrupted_runs import ARM, estate, moved, of_kind, records, wait_for_writes
from tests.integration.test_replay import dead_letter, upload


def replay_in_child(stack: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rotation", "replay", "--yes", "-o", "json"],
        env=dict(os.environ),
        cwd=str(stack.repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_stops_a_replay_after_the_item_under_way_and_the_next_replay_takes_the_rest(stack) -> None:
    stack.set(ROTATION_CONCURRENCY="1")
    targets = estate(stack, 6)
    events = [
        dead_letter(s.event_grid_event("KeyNewVersionCreated", "acr-cmk", NEW, event_id=f"dl-{n}"))
        for n in ("first", "second")
    ]
    upload(stack, "2026/11/20/21/4e1f2a3b-4444-4f4a-8c33-dddddddddddd.json", events)
    stack.admin.add_fault(method="PATCH", host=ARM, latencyMs=400)
    child = replay_in_child(stack)
    wait_for_writes(stack, child, 2)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    [outcome] = json.loads(out)  # the second item never started
    assert outcome["eventId"] == "dl-first" and outcome["status"] == "interrupted"
    assert "replay stopped (SIGINT): 1 of 2 item(s) not started" in err and "Traceback" not in err
    trail = records(stack, outcome["runId"])
    assert of_kind(trail, "run-interrupted", reason="SIGINT")
    assert {r["target"] for r in of_kind(trail, "verified")} == moved(stack) != set(targets)
    found, _ = stack.service().audit.query(top=500)
    [finished] = [r for r in found if r["kind"] == "replay-finished"]
    assert finished["outcome"] == "interrupted"
    assert (finished["detail"]["stopped"], finished["detail"]["notStarted"]) == ("SIGINT", 1)
    # the next replay takes both: the interrupted run did not converge, the second never started
    again = run("replay", "--yes", "-o", "json")
    actions = {o["eventId"]: o["action"] for o in json.loads(again.output)}
    assert again.exit_code == 0 and actions == {
        "dl-first": "replayed",
        "dl-second": "replayed",
    }
    assert moved(stack) == set(targets)
