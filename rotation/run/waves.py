"""Canary waves: a resource tagged `cmk-rotation-wave=<n>` is updated in wave order (untagged
resources form the last wave), and a wave starts only when every earlier wave is healthy on
the new version. Grouping, the gate, the health rules and the soak decision are pure
functions here; reconcile.py applies each wave and asks `Rollout` what to do next.

Progress between attempts (which wave was verified when) lives in the ledger, never in the
queue message: a soak puts the request back on the queue, and the next attempt re-checks the
earlier waves from a fresh inventory before it goes on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from rotation.model.consumer import Consumer
from rotation.model.decisions import KEPT_CURRENT
from rotation.model.results import LAST_WAVE

WAVE_TAG = "cmk-rotation-wave"
LAST = LAST_WAVE
MAX_WAVE = 999
_WAVE_NUMBER = re.compile(r"[0-9]{1,4}")
SUCCEEDED = "succeeded"
WAVE_HALTED = "WaveHalted"
WAVE_SOAKING = "WaveSoaking"

Health = Callable[[Consumer], str | None]


class Step(Protocol):
    @property
    def target(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def consumer(self) -> Consumer: ...


def wave_of(tags: Any) -> str:
    """The wave label a resource's tags put it in: "0", "1", ... or "last"."""
    for name, value in dict(tags or {}).items():
        if name.lower() == WAVE_TAG:
            text = str(value).strip()
            # ASCII digits only: str.isdigit() also passes "²", which int() cannot read
            if _WAVE_NUMBER.fullmatch(text) and int(text) <= MAX_WAVE:
                return str(int(text))
            return LAST
    return LAST


def bad_wave_tag(tags: Any) -> str | None:
    """The tag's value when it is present but not a wave number (that resource goes last)."""
    for name, value in dict(tags or {}).items():
        if name.lower() == WAVE_TAG and wave_of({WAVE_TAG: value}) == LAST:
            return str(value)
    return None


def order(label: str) -> tuple[int, int]:
    return (1, 0) if label == LAST else (0, int(label))


@dataclass(frozen=True)
class Wave:
    label: str
    steps: tuple[Any, ...]

    @property
    def updates(self) -> tuple[Any, ...]:
        return tuple(s for s in self.steps if s.action == "update")

    @property
    def gated(self) -> tuple[Any, ...]:
        return tuple(s for s in self.steps if s.action in KEPT_CURRENT)


def group(steps: Iterable[Step]) -> list[Wave]:
    """Steps by wave, in wave order (only waves that hold a gated consumer)."""
    by_label: dict[str, list[Step]] = {}
    for step in steps:
        if step.action in KEPT_CURRENT:
            by_label.setdefault(wave_of(step.consumer.tags), []).append(step)
    return [Wave(label, tuple(by_label[label])) for label in sorted(by_label, key=order)]


def describe(steps: Iterable[Any]) -> str | None:
    """One line for people from plan steps or step results (each has `.wave` and `.action`):
    `waves: 0 (2 to update) → 1 (1) → last (3)`; None when everything is in one wave."""
    updates: dict[str, int] = {}
    for step in steps:
        if step.action in KEPT_CURRENT and step.wave:
            updates[step.wave] = updates.get(step.wave, 0) + (step.action == "update")
    if len(updates) < 2:
        return None
    return "waves: " + " → ".join(
        f"{label} ({updates[label]} to update)" for label in sorted(updates, key=order)
    )


def summary(waves: Sequence[Wave]) -> list[dict[str, Any]]:
    """What each wave would touch, for plans and dry runs."""
    return [{"wave": w.label, "update": [s.target for s in w.updates], "gated": len(w.gated)} for w in waves]


def tag_warnings(consumers: Iterable[Consumer]) -> list[str]:
    return [
        f"{c.target}: tag {WAVE_TAG}={value!r} is not a wave number (0-{MAX_WAVE}); it goes in the last wave"
        for c in consumers
        if (value := bad_wave_tag(c.tags)) is not None
    ]


# -- health ------------------------------------------------------------------------------------
def health_problem(consumer: Consumer | None, desired: str, kind_health: Health | None = None) -> str | None:
    """Why a consumer does not count as verified on `desired` (None: healthy). Read back on the
    new version, provisioning state Succeeded (when the kind reports one), and the service's own
    CMK status healthy where the kind reports it."""
    if consumer is None:
        return "no longer exists or no longer shows a customer-managed key"
    if consumer.version != desired:
        return f"shows version {consumer.version or 'versionless'}, not {desired}"
    state = consumer.provisioning_state
    if state is not None and state.lower() != SUCCEEDED:
        return f"provisioning state is {state}, not Succeeded"
    return kind_health(consumer) if kind_health is not None else None


def gate_problems(
    earlier: Iterable[Consumer | None],
    targets: Iterable[str],
    desired: str,
    health: Callable[[Consumer | None], str | None],
) -> list[str]:
    """`<target>: <problem>` for every earlier-wave consumer that is not healthy."""
    found = []
    for target, consumer in zip(targets, earlier, strict=True):
        problem = health(consumer)
        if problem:
            found.append(f"{target.rsplit('/', 1)[-1]}: {problem}")
    return found


# -- soak --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    """The last wave verified for a desired version, and when (ledger row, see storage/ledger.py)."""

    desired: str
    wave: str
    verified_at: datetime


def progress_of(row: dict[str, Any] | None) -> Progress | None:
    """A ledger row as Progress (None when absent or unreadable: the soak then starts afresh)."""
    if not row:
        return None
    try:
        moment = datetime.fromisoformat(str(row["VerifiedAt"]).replace("Z", "+00:00"))
        return Progress(str(row["DesiredVersion"]), wave_of({WAVE_TAG: row["Wave"]}), moment)
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class SoakDecision:
    wait_seconds: int  # 0: go on now
    started_at: datetime  # when the soak began (the earlier wave's verification)
    record: bool  # no usable progress was stored: store `started_at` so the soak is honoured


def soak(
    progress: Progress | None,
    previous_wave: str,
    desired: str,
    *,
    now: datetime,
    minutes: float,
    recheck_seconds: int,
) -> SoakDecision:
    """Whether the wave after `previous_wave` may start now. Without stored progress for this
    desired version and wave (e.g. the earlier wave was moved by someone else), the soak starts
    now: it is always observed, never skipped. A wait longer than `recheck_seconds` is cut into
    rechecks, so a canary that turns unhealthy during the soak halts the rollout early."""
    if minutes <= 0:
        return SoakDecision(0, now, False)
    usable = (
        progress is not None
        and progress.desired == desired
        and order(progress.wave) >= order(previous_wave)
        and progress.verified_at <= now
    )
    started = progress.verified_at if usable and progress is not None else now
    left = (started + timedelta(minutes=minutes) - now).total_seconds()
    wait = 0 if left <= 0 else max(1, min(math.ceil(left), recheck_seconds))
    return SoakDecision(wait, started, not usable)


# -- messages ----------------------------------------------------------------------------------
def halted_message(wave: str, problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
    return f"halted after wave {wave}: {shown}"


def soaking_message(wave: str, next_wave: str, started: datetime, minutes: float) -> str:
    until = started + timedelta(minutes=minutes)
    return (
        f"wave {wave} verified; wave {next_wave} starts after the soak "
        f"(ROTATION_WAVE_SOAK_MINUTES={minutes:g}, at {until:%Y-%m-%d %H:%M:%S} UTC)"
    )


# -- the roll-out ------------------------------------------------------------------------------
class Result(Protocol):
    outcome: str
    error: str | None
    error_code: str | None
    message: str


@dataclass
class RolloutOutcome:
    results: dict[str, Any]  # target -> the step's result
    halted: str | None = None  # "halted after wave n: ..."
    wait_seconds: int = 0  # > 0: soaking, put the request back for this long
    note: str | None = None
    soaking: bool = False  # the later waves wait for the soak (wait_seconds 0: another request waits)


@dataclass
class Rollout:
    """Apply update steps wave by wave. Effects come in as callables, so the rules stay here and
    reconcile.py supplies only how to apply, read back, hold a step and store progress."""

    waves: Sequence[Wave]
    desired: str
    apply: Callable[[Sequence[Any]], list[Any]]  # the steps' results, in order
    read_back: Callable[[Sequence[Any]], list[Consumer | None]]
    health: Callable[[Consumer | None], str | None]
    hold: Callable[[Any, str, str], Any]  # (step, error code, message) -> a skipped result
    load: Callable[[], Progress | None]
    save: Callable[[Progress], None]
    now: Callable[[], datetime]
    record: Callable[..., Any]  # the audit trail's record(kind, **fields)
    soak_minutes: float = 0
    recheck_seconds: int = 300
    # Claim the soak for this request (False: another live request already carries it, so this
    # one stops instead of starting a second chain of rechecks; the sweep queues one an hour).
    claim: Callable[[int], bool] = lambda seconds: True

    def run(self) -> RolloutOutcome:
        done: dict[str, Any] = {}
        latest = {s.target: s.consumer for w in self.waves for s in w.gated}
        for index, wave in enumerate(self.waves):
            if not wave.updates:
                continue
            if index > 0 and (stop := self._gate(index, latest, done)) is not None:
                return stop
            for step, result in zip(wave.updates, self.apply(wave.updates), strict=True):
                done[step.target] = result
            failed = [
                f"{_name(s.target)}: {done[s.target].error or done[s.target].outcome}"
                for s in wave.updates
                if done[s.target].outcome != "verified"
            ]
            if failed:
                return self._halt(done, index + 1, wave.label, failed)
            if any(w.updates for w in self.waves[index + 1 :]):
                for step, consumer in zip(wave.updates, self.read_back(wave.updates), strict=True):
                    latest[step.target] = consumer
                if self.soak_minutes > 0:
                    self.save(Progress(self.desired, wave.label, self.now()))
            self.record(
                "wave-verified", outcome="verified", detail={"wave": wave.label, "targets": len(wave.updates)}
            )
        return RolloutOutcome(done)

    def _gate(
        self, index: int, latest: dict[str, Consumer | None], done: dict[str, Any]
    ) -> RolloutOutcome | None:
        """Before wave `index`: every earlier wave healthy, and the soak over."""
        earlier = [s.target for w in self.waves[:index] for s in w.gated]
        previous = self.waves[index - 1].label
        problems = gate_problems([latest[t] for t in earlier], earlier, self.desired, self.health)
        if problems:
            return self._halt(done, index, previous, problems)
        decision = soak(
            self.load(),
            previous,
            self.desired,
            now=self.now(),
            minutes=self.soak_minutes,
            recheck_seconds=self.recheck_seconds,
        )
        if decision.record:
            self.save(Progress(self.desired, previous, decision.started_at))
        if not decision.wait_seconds:
            return None
        note = soaking_message(previous, self.waves[index].label, decision.started_at, self.soak_minutes)
        wait = decision.wait_seconds
        if not self.claim(wait):
            note, wait = note + "; another queued request carries the rollout on", 0
        self._hold_from(done, index, WAVE_SOAKING, note)
        self.record(
            "wave-soaking",
            outcome="requeued",
            message=note,
            detail={"wave": previous, "next": self.waves[index].label, "delaySeconds": wait},
        )
        return RolloutOutcome(done, wait_seconds=wait, note=note, soaking=True)

    def _halt(self, done: dict[str, Any], start: int, wave: str, problems: list[str]) -> RolloutOutcome:
        message = halted_message(wave, problems)
        self._hold_from(done, start, WAVE_HALTED, message)
        self.record(
            "wave-halted", outcome="failed", errorCode=WAVE_HALTED, message=message, detail={"wave": wave}
        )
        return RolloutOutcome(done, halted=message)

    def _hold_from(self, done: dict[str, Any], start: int, code: str, message: str) -> None:
        for wave in self.waves[start:]:
            for step in wave.updates:
                if step.target not in done:
                    done[step.target] = self.hold(step, code, message)


def _name(target: str) -> str:
    return target.rsplit("/", 1)[-1]
