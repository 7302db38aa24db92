"""A run that never closed (its process was killed, its host crashed): the next run of the key,
taking over the dead run's lease, records what that run left unrecorded.

The dead run's plan document is durable before its first write (run/narrate.py), but its
outcome records are written behind in batches, so the last moves before the kill can be on the
consumers without a record. Every consumer that run planned to update, now found on the version
it was moving to, with no `verified` record of that run, gets an `unrecorded-move` record
naming the run; the dead run's record says `interrupted`.
"""

from __future__ import annotations

import logging
from typing import Any

from rotation.model.decisions import UPDATE
from rotation.model.results import Plan, RunResult
from rotation.storage.audit import AuditStore, AuditTrail, AuditUnavailable
from rotation.storage.runs import RunStore

log = logging.getLogger("rotation.unfinished")


def account_for_unfinished(
    audit: AuditStore, runs: RunStore, previous_owner: str, plan: Plan, trail: AuditTrail, result: RunResult
) -> None:
    """`previous_owner`: the lease owner this run took the key's lease over from."""
    dead = previous_owner.split("/")[0]  # ledger.lease_owner: "<run id>/<attempt>"
    same_run = dead == trail.run_id  # an earlier attempt of this run (the queue retried it)
    if not same_run and runs.status(dead) != "running":
        return  # it closed itself; only its lease was left behind
    try:
        moved = _unrecorded_moves(audit, _records_of(audit, dead, same_run), plan)
    except AuditUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - a dead run's unreadable records must not stop this one
        log.warning("run %s: the records of %s could not be read: %s", trail.run_id, dead, exc)
        trail.record(
            "warning", message=f"the records of unfinished run {dead} could not be read: {exc}"[:1000]
        )
        return
    for step in moved:
        trail.record(
            "unrecorded-move",
            target=step["target"],
            outcome="reported",
            reason="interrupted-run",
            fromVersion=step["fromVersion"],
            toVersion=step["toVersion"],
            message=f"found on {step['toVersion']}: run {dead} moved it and ended without recording it",
            detail={"interruptedRun": dead, "lastRecord": step.get("lastRecord")},
        )
    trail.record(
        "unfinished-run",
        outcome="interrupted",
        reason="lease-taken-over",
        message=f"run {dead} ended without closing; {len(moved)} move(s) it left unrecorded are recorded here",
        detail={"interruptedRun": dead, "unrecordedMoves": len(moved)},
    )
    result.notes.append(f"run {dead} ended without closing: recorded {len(moved)} move(s) it left unrecorded")
    if not same_run:
        runs.note(
            dead,
            "interrupted",
            f"ended without closing (its process stopped); run {trail.run_id} "
            f"recorded {len(moved)} move(s) it left unrecorded",
        )


def _records_of(audit: AuditStore, run_id: str, same_run: bool) -> list[dict[str, Any]]:
    """The dead run's records (for an earlier attempt of this run: those before this attempt)."""
    anchor = audit.latest_anchor(run_id)
    if anchor is None:
        return []  # it never made its plan durable, so it wrote nothing
    records = audit.run_records(run_id, anchor["partition"])
    if same_run:
        starts = [i for i, r in enumerate(records) if r.get("kind") == "run-started"]
        records = records[: starts[-1]] if starts else records
    return records


def _unrecorded_moves(audit: AuditStore, records: list[dict[str, Any]], plan: Plan) -> list[dict[str, Any]]:
    """The dead run's planned updates now on the version it was moving to, without `verified`."""
    plans = [r for r in records if r.get("kind") == "plan"]
    name = ((plans[-1].get("detail") or {}).get("planDocument")) if plans else None
    document = audit.plan_document(name) if isinstance(name, str) else None
    if not document:
        return []
    last: dict[str, str] = {}
    for record in records:
        if record.get("target") and record.get("kind") in ("verified", "apply-outcome"):
            last[record["target"].lower()] = str(record.get("outcome"))
    now_on = {s.target.lower(): s.from_version for s in plan.steps}
    moved = []
    for step in document.get("steps") or ():
        target = str(step.get("target") or "").lower()
        to_version = step.get("toVersion")
        if step.get("action") != UPDATE or last.get(target) == "verified" or not to_version:
            continue
        if now_on.get(target) == to_version and step.get("fromVersion") != to_version:
            moved.append({**step, "lastRecord": last.get(target)})
    return moved
