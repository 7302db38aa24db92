"""Outcome events for alerting: one CloudEvent per finished run to the Event Grid custom topic
in ROTATION_OUTCOME_TOPIC_ENDPOINT, published with the managed identity. A failed publish is
audited and never undoes or fails the rotation."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError
from azure.core.messaging import CloudEvent

from rotation.azure.retry import RetryPolicy, call
from rotation.model.decisions import NEEDS_PERSON
from rotation.model.results import RunResult
from rotation.storage.audit import AuditTrail

if TYPE_CHECKING:
    from rotation.azure.clients import Clients

log = logging.getLogger("rotation.outcomes")
SOURCE = "/cmk-rotation"
MAX_TARGETS = 500  # keep an event well under Event Grid's 1 MB
_PUBLISH_RETRY = RetryPolicy(attempts=3)


def event_type(result: RunResult) -> str:
    if result.status == "failed":
        verified = any(step.outcome == "verified" for step in result.steps)
        return "Rotation.PartiallyFailed" if verified else "Rotation.Failed"
    if result.status == "needs-attention" or any(step.action in NEEDS_PERSON for step in result.steps):
        return "Rotation.Blocked"
    return "Rotation.Completed"


def event_data(result: RunResult) -> dict[str, Any]:
    data = result.to_dict()
    steps = data.pop("steps")
    data["targets"] = [
        {
            k: s[k]
            for k in (
                "target",
                "kind",
                "action",
                "reason",
                "outcome",
                "fromVersion",
                "toVersion",
                "errorCode",
                "error",
            )
        }
        for s in steps[:MAX_TARGETS]
    ]
    data["targetsTruncated"] = len(steps) > MAX_TARGETS
    return data


def publish(
    endpoint: str | None,
    clients: Clients,
    result: RunResult,
    trail: AuditTrail,
    policy: RetryPolicy | None = None,
) -> bool:
    """Publish the run's outcome if a topic is configured. Never raises. Retried by retry.py
    (the client's own retries are off), two retries unless told otherwise."""
    if not endpoint or result.dry_run or result.status == "soaking":  # not finished: it continues
        return False
    kind = event_type(result)
    event = CloudEvent(source=SOURCE, type=kind, subject=result.key_id, data=event_data(result))
    try:
        client = clients.outcome_topic(endpoint)
        call(lambda: client.send([event]), policy=policy or _PUBLISH_RETRY, what=f"publish {kind}")
    except (AzureError, ValueError) as exc:
        trail.record(
            "outcome-publish-failed",
            outcome="failed",
            errorCode=type(exc).__name__,
            message=f"could not publish {kind} to {endpoint}: {exc}",
        )
        log.warning("outcome event for run %s not published: %s", result.run_id, exc)
        return False
    trail.record("outcome-published", outcome=kind, detail={"endpoint": endpoint, "eventId": event.id})
    return True
