"""Forged audit history, built the way an attacker with table write and blob create (the
anchors' container is immutable: new blobs, no overwrites, no deletes) would build it, must
make `rotation audit verify` exit 4 (issue 17, section 1)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient
from click.testing import CliRunner

from rotation.doors.cli import main
from rotation.model.ids import parse_key_id
from rotation.storage.audit import (
    ANCHOR_CONTAINER,
    AUDIT_TABLE,
    HEADS_PARTITION,
    canonical_hash,
    key_slug,
    verify,
)
from rotation.storage.audit.store import AuditStore
from tests import scenarios as s
from tests.support.runs import rotate

OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("acr-cmk")


def estate(stack) -> None:
    key = s.key(s.version("old", created="-300d"), s.version("new", created="-10d"))
    stack.load(
        s.scenario(
            {"acr-cmk": key},
            registries=[
                s.registry("reg1", s.key_id("acr-cmk", OLD)),
                s.registry("reg2", s.key_id("acr-cmk", OLD)),
            ],
        )
    )


class Forger:
    """What someone holding the storage account's data-plane write can do by hand."""

    def __init__(self, connection_string: str) -> None:
        self.table = TableClient.from_connection_string(connection_string, AUDIT_TABLE)
        self.anchors = ContainerClient.from_connection_string(connection_string, ANCHOR_CONTAINER)

    def rows(self, run_id: str) -> list[dict[str, Any]]:
        found = self.table.query_entities("RunId eq @r and PartitionKey ne 'heads'", parameters={"r": run_id})
        return sorted(found, key=lambda e: e["Seq"])

    def rehash(self, entity: dict[str, Any], prev: str) -> str:
        entity["PrevHash"] = prev
        entity["Hash"] = canonical_hash(AuditStore.record_from_entity(entity))
        return entity["Hash"]

    def rechain(self, rows: list[dict[str, Any]], prev: str) -> str:
        """Recompute every hash from `prev` on and write the rows back; returns the new head."""
        for entity in rows:
            prev = self.rehash(entity, prev)
            self.table.upsert_entity(entity)
        return prev

    def anchor(self, name: str, run_id: str, count: int, head: str, like: dict[str, Any]) -> None:
        body = {**like, "runId": run_id, "count": count, "headHash": head}
        self.anchors.upload_blob(name, json.dumps(body).encode(), overwrite=False)

    def latest_anchor(self, run_id: str) -> dict[str, Any]:
        names = sorted(b.name for b in self.anchors.list_blobs(name_starts_with=f"runs/{run_id}/"))
        return json.loads(self.anchors.download_blob(names[-1]).readall())

    def rewrite_and_anchor(self, run_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Rechain edited rows, add one record and anchor the new head under a proper name, as
        the function would; returns the added record."""
        head = self.rechain(rows, rows[0]["PrevHash"])
        extra = self.append(rows, head)
        count = extra["Seq"] + 1
        self.anchor(
            f"runs/{run_id}/{count:08d}.json", run_id, count, extra["Hash"], self.latest_anchor(run_id)
        )
        return extra

    def append(self, rows: list[dict[str, Any]], prev: str) -> dict[str, Any]:
        """One more record after `rows`, chained to `prev` (so the anchor count can grow)."""
        extra = dict(rows[-1])
        extra["Seq"] = rows[-1]["Seq"] + 1
        extra["Kind"], extra["Message"] = "note", "all good"
        extra["RowKey"] = f"{rows[-1]['RowKey'][:-6]}{999999 - extra['Seq']:06d}"
        self.rehash(extra, prev)
        self.table.upsert_entity(extra)
        return extra


def verify_exit(stack) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", "verify"])
    return result.exit_code, result.output


def problems(stack, run_id: str | None = None) -> set[str]:
    _, findings = verify(stack.service().audit)
    return {f.problem for f in findings if run_id is None or f.run_id == run_id}


def test_honest_history_verifies_including_multi_anchor_runs(stack) -> None:
    estate(stack)
    runs = [rotate(stack), rotate(stack)]
    forger = Forger(stack.storage)
    assert len(list(forger.anchors.list_blobs())) > len(runs)  # the runs were anchored more than once
    assert verify_exit(stack)[0] == 0
    assert verify(stack.service().audit)[1] == []


def test_a_rewritten_middle_record_with_a_last_sorting_anchor_is_caught(stack) -> None:
    estate(stack)
    run_id = rotate(stack)
    forger = Forger(stack.storage)
    rows = forger.rows(run_id)
    middle = len(rows) // 2
    rows[middle]["Outcome"] = "skipped"
    first_prev = rows[0]["PrevHash"]
    head = forger.rechain(rows, first_prev)
    forger.anchor(f"runs/{run_id}/99999999.json", run_id, len(rows), head, forger.latest_anchor(run_id))
    code, output = verify_exit(stack)
    assert code == 4 and "edited" in output
    assert {"edited", "bad-anchor"} <= problems(stack, run_id)


def test_a_rewrite_under_a_well_named_new_anchor_is_caught_by_the_older_anchor(stack) -> None:
    estate(stack)
    run_id = rotate(stack)
    forger = Forger(stack.storage)
    rows = forger.rows(run_id)
    rows[1]["Message"] = "nothing to see"
    forger.rewrite_and_anchor(run_id, rows)
    assert verify_exit(stack)[0] == 4
    # the forged anchor also claims to have moved the key's head, which it did not
    assert problems(stack, run_id) == {"edited", "head-mismatch"}


def test_a_second_record_with_an_existing_sequence_number_is_caught(stack) -> None:
    estate(stack)
    run_id = rotate(stack)
    forger = Forger(stack.storage)
    rows = forger.rows(run_id)
    verified = next(r for r in rows if r["Kind"] == "verified")
    forged = dict(verified)
    forged["Outcome"], forged["Message"] = "failed", "forged"
    forged["RowKey"] = "0" + verified["RowKey"][1:]  # sorts first: `audit list` shows it on top
    forger.rehash(forged, verified["PrevHash"])
    forger.table.upsert_entity(forged)
    listed, _ = stack.service().audit.query(run=run_id, top=500)
    assert "forged" in {r["message"] for r in listed}  # what a reader of `audit list` sees
    assert verify_exit(stack)[0] == 4
    _, findings = verify(stack.service().audit)
    [duplicate] = [f for f in findings if f.problem == "duplicate"]
    assert duplicate.run_id == run_id and forged["RowKey"] in duplicate.detail  # the forgery is named
    assert verified["RowKey"] not in duplicate.detail
    assert "edited" not in problems(stack, run_id)  # the genuine chain still holds


def test_records_of_a_run_with_no_anchor_are_reported(stack) -> None:
    estate(stack)
    genuine = rotate(stack)
    forger = Forger(stack.storage)
    rows = forger.rows(genuine)
    fake_run = str(uuid.uuid4())
    prev = ""
    for entity in rows[:3]:
        entity["RunId"] = fake_run
        entity["RowKey"] = entity["RowKey"].replace(genuine, fake_run)
        prev = forger.rehash(entity, prev)
        forger.table.upsert_entity(entity)
    code, output = verify_exit(stack)
    assert code == 4 and "unanchored-run" in output
    assert problems(stack, fake_run) == {"unanchored-run"}
    assert problems(stack, genuine) == set()


def test_a_rewritten_latest_run_is_caught_without_a_later_run(stack) -> None:
    estate(stack)
    rotate(stack)
    latest = rotate(stack)  # the key's newest run: no later run chains to it
    forger = Forger(stack.storage)
    rows = forger.rows(latest)
    for entity in rows:
        entity["Actor"] = "someone-else"  # who asked for the run, rewritten throughout
    extra = forger.rewrite_and_anchor(latest, rows)
    count = extra["Seq"] + 1
    heads = forger.table.get_entity(HEADS_PARTITION, key_slug(parse_key_id(KEY)))
    heads.update(HeadHash=extra["Hash"], Count=count)  # the next run would chain to the forgery
    forger.table.upsert_entity(heads)
    assert verify_exit(stack)[0] == 4
    assert "edited" in problems(stack, latest)


def test_a_key_head_pointing_at_no_anchor_is_caught(stack) -> None:
    estate(stack)
    run_id = rotate(stack)
    forger = Forger(stack.storage)
    heads = forger.table.get_entity(HEADS_PARTITION, key_slug(parse_key_id(KEY)))
    heads["HeadHash"] = "0" * 64
    forger.table.upsert_entity(heads)
    assert verify_exit(stack)[0] == 4
    assert problems(stack, run_id) == {"head-mismatch"}


# -- issue 22, item 3: Table write alone (and a copied run) ----------------------------------------
def test_swapped_rowkeys_inside_a_run_are_caught(stack) -> None:
    estate(stack)
    run_id = rotate(stack)
    forger = Forger(stack.storage)
    rows = forger.rows(run_id)
    first, second = rows[1], rows[2]
    for entity in (first, second):
        forger.table.delete_entity(entity["PartitionKey"], entity["RowKey"])
    first["RowKey"], second["RowKey"] = second["RowKey"], first["RowKey"]  # audit list's order changes
    forger.table.upsert_entity(first)
    forger.table.upsert_entity(second)
    assert verify_exit(stack)[0] == 4
    assert problems(stack, run_id) == {"moved-row"}


def test_a_run_hidden_from_audit_list_by_its_key_is_caught(stack) -> None:
    estate(stack)
    run_id = rotate(stack)
    forger = Forger(stack.storage)
    for entity in forger.rows(run_id):
        entity["KeyNorm"] = "https://elsewhere.vault.azure.net/keys/other"
        if "TargetNorm" in entity:
            entity["TargetNorm"] = "/subscriptions/none"
        forger.table.upsert_entity(entity)
    listed, _ = stack.service().audit.query(key=KEY, top=500)
    assert run_id not in {r["runId"] for r in listed}  # what a reader of `audit list --key` sees
    assert verify_exit(stack)[0] == 4
    assert problems(stack, run_id) == {"index-mismatch"}


def test_a_key_head_rolled_back_to_an_older_run_is_caught(stack) -> None:
    estate(stack)
    older = rotate(stack)
    latest = rotate(stack)
    forger = Forger(stack.storage)
    anchor = forger.latest_anchor(older)  # a genuine anchor: the head matches it
    heads = forger.table.get_entity(HEADS_PARTITION, key_slug(parse_key_id(KEY)))
    heads.update(RunId=older, Count=anchor["count"], HeadHash=anchor["headHash"])
    forger.table.upsert_entity(heads)
    assert verify_exit(stack)[0] == 4
    _, findings = verify(stack.service().audit)
    [rolled] = [f for f in findings if f.problem == "head-mismatch"]
    assert latest in rolled.detail and "rolled back" in rolled.detail


def test_an_old_run_reissued_under_a_new_run_id_is_caught(stack) -> None:
    """Its records copied with the new id (hashes recomputed), its plan document and anchors
    copied under the new id, and the key's head moved to it."""
    estate(stack)
    original = rotate(stack)
    forger = Forger(stack.storage)
    copy = str(uuid.uuid4())
    rows = forger.rows(original)
    prev, heads = rows[0]["PrevHash"], {}
    for entity in rows:
        entity["RunId"], entity["RowKey"] = copy, entity["RowKey"].replace(original, copy)
        if entity["Kind"] == "plan":
            detail = json.loads(entity["Detail"])
            document = forger.anchors.download_blob(detail["planDocument"]).readall()
            detail["planDocument"] = detail["planDocument"].replace(original, copy)
            forger.anchors.upload_blob(detail["planDocument"], document)
            entity["Detail"] = json.dumps(detail, sort_keys=True)
        prev = forger.rehash(entity, prev)
        heads[entity["Seq"] + 1] = prev
        forger.table.upsert_entity(entity)
    for blob in list(forger.anchors.list_blobs(name_starts_with=f"runs/{original}/")):
        body = json.loads(forger.anchors.download_blob(blob.name).readall())
        forger.anchor(blob.name.replace(original, copy), copy, body["count"], heads[body["count"]], body)
    head = forger.table.get_entity(HEADS_PARTITION, key_slug(parse_key_id(KEY)))
    head.update(RunId=copy, Count=len(rows), HeadHash=prev)
    forger.table.upsert_entity(head)
    assert verify_exit(stack)[0] == 4
    assert "copied-run" in problems(stack, copy)


# -- issue 22, item 4: malformed rows are findings or skipped rows, never a crash ------------------
def test_a_head_row_whose_count_is_not_a_number_is_a_finding(stack) -> None:
    estate(stack)
    run_id = rotate(stack)
    forger = Forger(stack.storage)
    heads = forger.table.get_entity(HEADS_PARTITION, key_slug(parse_key_id(KEY)))
    heads["Count"] = "many"
    forger.table.upsert_entity(heads)
    code, output = verify_exit(stack)
    assert code == 4 and "malformed" in output
    assert problems(stack, run_id) == {"head-mismatch"}


def test_an_anchor_whose_previous_anchor_is_a_list_is_a_finding(stack) -> None:
    estate(stack)
    genuine = rotate(stack)
    forger = Forger(stack.storage)
    forged = str(uuid.uuid4())
    like = {**forger.latest_anchor(genuine), "prevRunId": genuine, "prevAnchor": ["runs", genuine]}
    forger.anchor(f"runs/{forged}/00000001.json", forged, 1, "0" * 64, like)
    code, output = verify_exit(stack)
    assert code == 4 and "bad-anchor" in output
    assert problems(stack, forged) == {"bad-anchor"}


def test_a_time_stored_as_a_datetime_is_skipped_by_list_and_found_by_verify(stack) -> None:
    import function_app  # the HTTP door as the host loads it
    from devstack.functions_host import http_request

    estate(stack)
    run_id = rotate(stack)
    forger = Forger(stack.storage)
    rows = forger.rows(run_id)
    entity = rows[1]
    entity["Time"] = datetime.fromisoformat(entity["Time"].replace("Z", "+00:00"))  # Edm.DateTime
    forger.table.upsert_entity(entity)
    listed = CliRunner().invoke(main, ["-o", "json", "audit", "list", "--run", run_id, "--top", "500"])
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.stdout)["records"]) == len(rows) - 1  # the row is skipped, the rest shown
    response = function_app.list_audit(http_request("GET", "/api/audit", query={"run": run_id}))
    assert response.status_code == 200
    code, output = verify_exit(stack)
    assert code == 4 and "malformed" in output
