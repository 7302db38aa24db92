"""The planner: values in, plan out. One step per consumer (whatever case its id came in),
each decided by the policy chain and then its kind's own checks; the consumers an
interrupted write left missing are planned the same way (the chain finishes them first).
Each step carries its canary wave (the cmk-rotation-wave tag, rotation/core/waves.py)."""

from __future__ import annotations

from collections.abc import Mapping

from rotation.core import waves
from rotation.core.gather import Gathered
from rotation.core.policy import decide
from rotation.model.consumer import Consumer
from rotation.model.decisions import Check, PolicyContext
from rotation.model.ids import KeyRef
from rotation.model.results import Plan, PlanStep, error_dict


def make_plan(
    key: KeyRef, gathered: Gathered, context: PolicyContext, kind_checks: Mapping[str, tuple[Check, ...]]
) -> Plan:
    state = gathered.state
    desired = state.desired.version if state.desired else None
    unique: dict[str, Consumer] = {}
    for consumer in (*gathered.inventory.consumers, *gathered.pending):
        unique.setdefault(consumer.resource_id.key, consumer)
    steps = tuple(
        PlanStep.of(c, decide(c, context, kind_checks.get(c.kind, ())), desired, waves.wave_of(c.tags))
        for c in unique.values()
    )
    errors = [error_dict(e.scope, e.kind, e.error) for e in gathered.inventory.errors]
    warnings = [*gathered.warnings, *waves.tag_warnings(unique.values())]
    if not state.recoverable:
        warnings.append(
            f"vault recovery level is {state.recovery_level}: enable soft delete and purge "
            "protection so a deleted key can be recovered"
        )
    return Plan(
        key,
        state,
        steps,
        (*errors, *gathered.errors),
        gathered.inventory.not_consumers,
        tuple(warnings),
        tuple(waves.summary(waves.group(steps))),
    )
