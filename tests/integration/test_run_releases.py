"""A worker process lives long (issue 27 item 5: RSS flat over consecutive runs): a run through
the queue trigger leaves nothing of itself behind once it returned: no step, no target's
apply, no audit trail, no worker thread. bench/rss.py measures the resident set itself."""

from __future__ import annotations

import gc
import threading

import azure.functions as func

import function_app
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.model.results import PlanStep
from rotation.run.apply import TargetApply
from rotation.storage.audit import AuditTrail
from rotation.storage.queue import encode
from tests import scenarios as s

PER_RUN = (PlanStep, TargetApply, AuditTrail)


def alive() -> dict[str, int]:
    gc.collect()
    counts = dict.fromkeys((kind.__name__ for kind in PER_RUN), 0)
    for thing in gc.get_objects():
        for kind in PER_RUN:
            if isinstance(thing, kind):
                counts[kind.__name__] += 1
    return counts


def rotate_once(stack, index: int) -> None:
    key = parse_key_id(s.key_id("acr-cmk"))
    stack.service().clients.keys(key.vault_url).rotate_key(key.name)  # a new version to roll to
    request = new_request(key, "cli", "pytest")
    function_app.run_rotation(func.QueueMessage(id=f"m{index}", body=encode(request).encode()))


def test_consecutive_runs_leave_nothing_of_themselves(stack) -> None:
    pinned = s.key_id("acr-cmk", s.vid("old"))
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-100d"))},
            registries=[s.registry(f"reg{i}", pinned, sub=(s.SUB_A, s.SUB_B)[i % 2]) for i in range(6)],
            batch_accounts=[s.batch("batch1", pinned)],
        )
    )
    rotate_once(stack, 0)  # the first run imports, signs in and fills the process's caches
    threads, before = threading.active_count(), alive()
    for index in range(1, 3):
        rotate_once(stack, index)
    assert len(stack.writes()) == 3 * 7  # every run wrote every target
    assert alive() == before == dict.fromkeys(before, 0)
    assert threading.active_count() == threads
