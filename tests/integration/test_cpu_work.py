"""Work the product does not need to do per target (issue 15, CPU per target): registries and
Batch accounts are listed, read and written in the wire format, and container groups listed so,
without building the typed management SDKs' models, with the same calls as before; a
long-running write is polled in the thread that waits for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from tests import scenarios as s

OLD, NEW = s.vid("old"), s.vid("new")

# A run in a fresh interpreter (this one has imported the SDKs for other tests): which
# management SDKs did it load, and how did each target end?
PROBE = """
import json, sys
from rotation.model.ids import parse_key_id
from rotation.service import service_for_environment
from rotation.model.request import new_request
result = service_for_environment().reconciler.run(new_request(parse_key_id(sys.argv[1]), "cli", "pytest"))
print(json.dumps({
    "outcomes": {step.target.rsplit("/", 1)[1]: step.outcome for step in result.steps},
    "sdks": sorted(m for m in sys.modules if m.count(".") == 2 and m.startswith("azure.mgmt.")),
}))
"""


def test_registries_batch_accounts_and_groups_are_handled_without_their_typed_sdks(stack) -> None:
    pinned = s.key_id("acr-cmk", OLD)
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-100d"), s.version("new", created="-1h"))},
            registries=[s.registry("reg1", pinned), s.registry("reg2", pinned, sub=s.SUB_B)],
            batch_accounts=[s.batch("batch1", pinned)],
            groups=[s.group("aci1", "acr-cmk", OLD)],  # listed and reported, never written
        )
    )
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, s.key_id("acr-cmk")],
        cwd=stack.repo,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=True,
    )
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["outcomes"] == {
        "reg1": "verified",
        "reg2": "verified",
        "batch1": "verified",
        "aci1": "skipped",
    }
    assert not {"azure.mgmt.containerregistry", "azure.mgmt.batch", "azure.mgmt.containerinstance"} & set(
        seen["sdks"]
    )
    assert len(stack.writes()) == 3  # one PATCH per target, as before
    state = stack.admin.state()
    assert {r["keyId"] for r in state["registries"]} == {s.key_id("acr-cmk", NEW)}
    assert {b["keyId"] for b in state["batchAccounts"]} == {s.key_id("acr-cmk", NEW)}


def test_a_long_running_write_is_followed_in_the_calling_thread(stack) -> None:
    """The worker waits for its write anyway: azure-core's LROPoller would start one more thread
    per target to poll in."""
    from rotation.azure.kinds import ApplyContext, parse_target
    from rotation.azure.kinds.registry import Registries
    from rotation.model.ids import parse_key_id

    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-100d"), s.version("new", created="-1h"))},
            registries=[s.registry("reg1", s.key_id("acr-cmk", OLD))],
        )
    )
    stack.admin.configure(lroSeconds=0.2, retryAfter=0)  # running when the write answers
    clients, kind = stack.service().clients, Registries()
    before = kind.read(clients, parse_target(s.registry_id("reg1")))
    assert before is not None
    stack.admin.clear_calls()
    started: set[str] = set()  # threads that ran Python code during the write
    threading.setprofile(lambda *_: started.add(threading.current_thread().name))
    try:
        after = kind.apply(
            clients, before, parse_key_id(s.key_id("acr-cmk", NEW)), ApplyContext("run", "pytest")
        )
    finally:
        threading.setprofile(None)
    assert after is not None and after.version == NEW
    assert started == set()
    calls = [c for c in stack.admin.calls()["calls"] if c["host"] == "management.azure.com"]
    assert [c["method"] for c in calls][:1] == ["PATCH"] and any(c["method"] == "GET" for c in calls)
