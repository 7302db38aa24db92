"""The planner: values in, plan out. One step per consumer (whatever case its id came in),
each decided by the policy chain and then its kind's own checks; the consumers an
interrupted write left missing are planned the same way (the chain finishes them first).
Each step carries its canary wave (the cmk-rotation-wave tag, rotation/run/waves.py)."""

from __future__ import annotations

from collections.abc import Mapping

from rotation.model.consumer import Consumer
from rotation.model.decisions import BLOCKED, UNREADABLE, Check, Decision, PolicyContext
from rotation.model.ids import KeyRef
from rotation.model.results import LAST_WAVE, Plan, PlanStep, error_dict
from rotation.run import waves
from rotation.run.gather import Gathered
from rotation.run.policy import decide


def make_plan(
    key: KeyRef, gathered: Gathered, context: PolicyContext, kind_checks: Mapping[str, tuple[Check, ...]]
) -> Plan:
    state = gathered.state
    desired = state.desired.version if state.desired else None
    unique: dict[str, Consumer] = {}
    for consumer in (*gathered.inventory.consumers, *gathered.pending):
        unique.setdefault(consumer.resource_id.key, consumer)
    steps = tuple(_step(c, context, kind_checks.get(c.kind, ()), desired) for c in unique.values())
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
        # a target an interrupted write left missing is still this key's consumer
        tuple(t for t in gathered.inventory.not_consumers if t.lower() not in unique),
        tuple(warnings),
        tuple(waves.summary(waves.group(steps))),
    )


def _step(
    consumer: Consumer, context: PolicyContext, checks: tuple[Check, ...], desired: str | None
) -> PlanStep:
    """One consumer's step. Its data is the resource owner's: an error planning it (a check
    tripping over an odd value) blocks this consumer only, never the plan of the others."""
    try:
        return PlanStep.of(consumer, decide(consumer, context, checks), desired, waves.wave_of(consumer.tags))
    except Exception as exc:  # noqa: BLE001 - reported on the step; the other consumers go on
        message = f"could not be planned ({type(exc).__name__}: {exc}); not touched, needs a person"
        return PlanStep.of(consumer, Decision(BLOCKED, UNREADABLE, message), desired, LAST_WAVE)


def not_consumers_error(plan: Plan) -> str | None:
    """The sentence refusing a request that names targets which do not use the key: a mistake
    in the request (CLI exit 2, HTTP 400), never a run that succeeds having done nothing."""
    if not plan.not_consumers:
        return None
    return (
        f"not a consumer of {plan.key.versionless_id} (it does not use this key, or does not exist): "
        + ", ".join(plan.not_consumers)
    )
