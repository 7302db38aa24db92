"""The audit trail's tamper evidence, an unwritable audit store, and the drift sweep."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

import function_app
from devstack.functions_host import timer_request
from rotation.azure.kinds import accepted_types
from rotation.doors.cli import main
from rotation.doors.worker import run_request
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.storage import audit as audit_module
from rotation.storage.audit import AuditUnavailable
from rotation.storage.ledger import Lease
from tests import scenarios as s
from tests.support.runs import rotate

OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("acr-cmk")


def estate(stack, *, near: bool = False) -> None:
    versions = [
        s.version("old", created="-300d"),
        s.version("new", created="-10d", exp="+20d" if near else "+355d"),
    ]
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(*versions), "other-cmk": s.key(s.version("o", created="-5d"))},
            registries=[
                s.registry("reg1", s.key_id("acr-cmk", OLD)),
                s.registry("reg2", s.key_id("acr-cmk", NEW)),
                s.registry("reg3", s.key_id("other-cmk", s.vid("o"))),
            ],
        )
    )


def audit_rows(stack, run_id: str) -> list[dict[str, Any]]:
    table = stack.service().audit.table
    rows = table.query_entities("RunId eq @r and PartitionKey ne 'heads'", parameters={"r": run_id})
    return sorted(rows, key=lambda e: e["Seq"])


class TestTamperEvidence:
    def test_untouched_chains_verify_and_runs_link_to_their_predecessor(self, stack) -> None:
        estate(stack)
        first, second = rotate(stack), rotate(stack)
        checked, findings = audit_module.verify(stack.service().audit)
        assert checked >= 2 and findings == []
        second_anchor = stack.service().audit.latest_anchor(second)
        assert second_anchor["prevRunId"] == first

    def test_an_edited_record_is_found(self, stack) -> None:
        estate(stack)
        run_id = rotate(stack)
        rows = audit_rows(stack, run_id)
        target = next(r for r in rows if r["Kind"] == "verified")
        target["Outcome"] = "failed"  # someone rewrites history
        stack.service().audit.table.upsert_entity(target)
        _, findings = audit_module.verify(stack.service().audit, run_ids=[run_id])
        assert [(f.problem, f.run_id) for f in findings] == [("edited", run_id)]

    def test_a_deleted_record_and_a_lost_tail_are_found(self, stack) -> None:
        estate(stack)
        run_a, run_b = rotate(stack), rotate(stack)
        table = stack.service().audit.table
        rows_a = audit_rows(stack, run_a)
        table.delete_entity(rows_a[3]["PartitionKey"], rows_a[3]["RowKey"])
        rows_b = audit_rows(stack, run_b)
        table.delete_entity(rows_b[-1]["PartitionKey"], rows_b[-1]["RowKey"])
        _, findings = audit_module.verify(stack.service().audit)
        problems = {(f.run_id, f.problem) for f in findings}
        assert (run_a, "missing") in problems and (run_b, "lost-tail") in problems

    def test_cli_verify_exit_codes(self, stack) -> None:
        estate(stack)
        run_id = rotate(stack)
        assert CliRunner().invoke(main, ["audit", "verify"]).exit_code == 0
        row = audit_rows(stack, run_id)[0]
        row["Actor"] = "someone-else"
        stack.service().audit.table.upsert_entity(row)
        result = CliRunner().invoke(main, ["audit", "verify"])
        assert result.exit_code == 4 and "edited" in result.output

    def test_cli_list_and_show(self, stack) -> None:
        estate(stack)
        run_id = rotate(stack)
        listed = CliRunner().invoke(main, ["-o", "json", "audit", "list", "--key", KEY, "--top", "500"])
        records = json.loads(listed.output)["records"]
        assert listed.exit_code == 0 and {r["runId"] for r in records} >= {run_id}
        shown = CliRunner().invoke(main, ["-o", "json", "audit", "show", run_id])
        body = json.loads(shown.output)
        assert body["run"]["status"] == "succeeded"
        assert [r["seq"] for r in body["records"]] == list(range(len(body["records"])))


def test_audit_store_down_fails_the_run_loudly_before_any_write(stack) -> None:
    estate(stack)
    service = stack.service()
    service.clients.tables().delete_table("RotationAudit")  # the audit store is gone; the rest works
    with pytest.raises(AuditUnavailable):
        run_request(service, new_request(parse_key_id(KEY), "http", "function-key"))
    assert stack.writes("PATCH") == []  # nothing rotated without a record
    assert service.ledger.holder(parse_key_id(KEY)) is None  # the lease was given back
    # Through the queue: the invocation fails, so the host retries the message.
    deliver = new_request(parse_key_id(KEY), "http", "function-key")
    from rotation.storage.queue import enqueue

    enqueue(service.requests_queue, deliver)
    dispatcher = stack.dispatcher(function_app.run_rotation, max_dequeue_count=2)
    stats = dispatcher.run_until_idle(timeout=60)
    dispatcher.close()
    assert [type(i.error).__name__ for i in stats.invocations] == ["AuditUnavailable", "AuditUnavailable"]
    assert len(stats.poisoned) == 1


class TestSweep:
    def test_sweep_finds_a_consumer_left_behind_and_the_queue_fixes_it(self, stack) -> None:
        estate(stack)
        function_app.sweep_drift(timer_request())
        dispatcher = stack.dispatcher(function_app.run_rotation)
        stats = dispatcher.run_until_idle(timeout=60)
        dispatcher.close()
        assert len(stats.invocations) == 1 and stats.failures == []  # only acr-cmk needed work
        registries = {r["id"].rsplit("/", 1)[1]: r["keyId"] for r in stack.admin.state()["registries"]}
        assert registries["reg1"].endswith(NEW)
        records, _ = stack.service().audit.query(top=200)
        checked = {r["keyId"]: r["outcome"] for r in records if r["kind"] == "sweep-checked"}
        assert checked == {KEY: "queued", s.key_id("other-cmk"): "nothing-to-do"}

    def test_sweep_treats_a_version_expiring_soon_as_near_expiry(self, stack) -> None:
        estate(stack, near=True)
        result = CliRunner().invoke(main, ["-o", "json", "sweep", "--dry-run"])
        findings = {f["keyId"]: f for f in json.loads(result.output)["keys"]}
        assert result.exit_code == 0
        assert findings[KEY]["nearExpiry"] == NEW and findings[KEY]["behind"] == 1
        assert findings[KEY]["requestId"] is None  # dry run queues nothing
        result = CliRunner().invoke(main, ["-o", "json", "sweep"])
        [queued] = [f for f in json.loads(result.output)["keys"] if f["requestId"]]
        dispatcher = stack.dispatcher(function_app.run_rotation)
        dispatcher.run_until_idle(timeout=60)
        dispatcher.close()
        versions = stack.admin.state()["vaults"]["contoso-cmk"]["keys"]["acr-cmk"]["versions"]
        assert len(versions) == 3  # the near-expiry request made a new version
        run = stack.service().runs.get(queued["requestId"])
        assert run["status"] == "succeeded" and run["createdVersion"] == versions[-1]["version"]


class TestVerifyReportsWhatIsNotTampering:
    """Issue 22, item 5 and item 2's last bullet: an outage and a stopped run are findings of
    their own; `--run` resolves a prefix like `audit show` and refuses an unknown id."""

    def test_a_record_storage_would_not_anchor_is_reported_as_that(self, stack) -> None:
        from azure.storage.blob import ContainerClient

        from rotation.storage.audit import ANCHOR_CONTAINER, AuditStore, AuditTrail
        from tests.conftest import dead_port

        estate(stack)
        service = stack.service()
        # Blob storage stops answering between the records' transaction and the anchor.
        frozen = ContainerClient.from_container_url(
            f"http://127.0.0.1:{dead_port()}/devstoreaccount1/{ANCHOR_CONTAINER}", retry_total=0
        )
        trail = AuditTrail(AuditStore(service.audit.table, frozen), retry_seconds=0, sleep=lambda _: None)
        trail.record("input-rejected", source="http", outcome="rejected", reason="invalid-key-id")
        with pytest.raises(AuditUnavailable):
            trail.flush()
        _, findings = audit_module.verify(service.audit)
        assert [(f.run_id, f.problem) for f in findings] == [(trail.run_id, "not-anchored")]
        assert "outage" in findings[0].detail
        result = CliRunner().invoke(main, ["audit", "verify"])
        assert result.exit_code == 4 and "not-anchored" in result.output

    def test_verify_run_takes_a_unique_prefix_and_refuses_an_unknown_id(self, stack) -> None:
        estate(stack)
        run_id = rotate(stack)
        result = CliRunner().invoke(main, ["audit", "verify", "--run", run_id[:8]])
        assert result.exit_code == 0 and "1 run(s) checked, 0 problem(s)" in result.output
        result = CliRunner().invoke(main, ["-o", "json", "audit", "verify", "--run", run_id[:8]])
        assert json.loads(result.stdout)["runsChecked"] == 1
        unknown = CliRunner().invoke(main, ["audit", "verify", "--run", "0badc0de"])
        assert unknown.exit_code == 2 and "no run 0badc0de" in unknown.output

    def test_a_run_still_running_after_its_lease_expired_is_unfinished(self, stack) -> None:
        estate(stack)
        finished = rotate(stack)
        stopped = new_request(parse_key_id(KEY), "cli", "pytest")
        service = stack.service()
        # What a SIGKILL leaves: the run record says running, its lease is gone.
        service.runs.started(
            stopped.request_id, key_id=stopped.key_id, source="cli", actor="pytest", dry_run=False, attempt=1
        )
        result = CliRunner().invoke(main, ["-o", "json", "audit", "verify"])
        assert result.exit_code == 4
        found = [(f["run_id"], f["problem"]) for f in json.loads(result.stdout)["findings"]]
        assert found == [(stopped.request_id, "unfinished")]
        assert finished not in {run for run, _ in found}
        held = service.ledger.acquire(parse_key_id(KEY), f"{stopped.request_id}/x")  # under way again
        assert CliRunner().invoke(main, ["audit", "verify"]).exit_code == 0
        held.release()


def test_the_worker_dequeuing_before_the_intake_flushes_keeps_one_chain(stack) -> None:
    """Issue 22, item 1 through the doors: while a renewal run holds the key's lease, the product's
    own KeyNewVersionCreated is enqueued and the worker takes the message before the intake's
    flush (run here by the queue client's send, so the interleaving is fixed, not timed)."""
    from rotation.doors.intake import enqueue_event
    from rotation.model.events import KeyEvent
    from rotation.service import Service
    from rotation.storage.queue import decode

    class WorkerDequeuesFirst(Service):
        worker_ran = False

        @property
        def requests_queue(self) -> Any:
            queue, service = super().requests_queue, self

            class Sending:
                def __getattr__(self, name: str) -> Any:
                    return getattr(queue, name)

                def send_message(self, content: str, **options: Any) -> Any:
                    sent = queue.send_message(content, **options)
                    if not service.worker_ran:  # the worker's first attempt, before the intake goes on
                        service.worker_ran = True
                        assert (
                            run_request(service, decode(content, accepted_types())) is None
                        )  # the lease is held: it waits
                    return sent

            return Sending()

    estate(stack)
    plain = stack.service()
    service = WorkerDequeuesFirst(plain.settings, plain.clients)
    renewal = service.ledger.acquire(parse_key_id(KEY), "renewal-run/0001")
    assert isinstance(renewal, Lease), renewal
    event = KeyEvent(
        "evt-race", "Microsoft.KeyVault.KeyNewVersionCreated", parse_key_id(f"{KEY}/{NEW}"), None, None, None,
        "EventGridSchema", None,
    )  # fmt: skip
    request = enqueue_event(service, event)
    renewal.release()
    assert service.worker_ran
    kinds = [
        r["kind"]
        for r in service.audit.run_records(
            request.request_id, plain.audit.latest_anchor(request.request_id)["partition"]
        )
    ]
    assert sorted(kinds) == ["event-received", "lease-waited", "request-queued"] and len(kinds) == 3
    assert audit_module.verify(service.audit) == (1, [])
    assert CliRunner().invoke(main, ["audit", "verify"]).exit_code == 0
