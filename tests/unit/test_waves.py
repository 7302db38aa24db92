"""Canary waves as pure rules: grouping by tag, health, the gate and the soak decision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.azure.kinds import Consumer, parse_target
from rotation.config import ConfigError, load_settings
from rotation.model.ids import parse_key_id
from rotation.run import waves

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = "https://contoso-cmk.vault.azure.net/keys/acr-cmk"
NEW = "b" * 32


def consumer(
    name: str, *, version: str | None = NEW, state: str | None = "Succeeded", **tags: str
) -> Consumer:
    rid = f"/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/{name}"
    key = parse_key_id(f"{KEY}/{version}" if version else KEY)
    return Consumer("registry", parse_target(rid), key, "westeurope", tags, provisioning_state=state)


@dataclass(frozen=True)
class Step:
    consumer: Consumer
    action: str = "update"

    @property
    def target(self) -> str:
        return self.consumer.target


def test_wave_tags_order_numbers_first_untagged_and_bad_values_last() -> None:
    assert waves.wave_of({"cmk-rotation-wave": "2"}) == "2"
    assert waves.wave_of({"CMK-Rotation-Wave": " 07 "}) == "7"
    assert waves.wave_of({}) == waves.LAST
    for bad in ("-1", "first", "1.5", "1000", ""):
        assert waves.wave_of({"cmk-rotation-wave": bad}) == waves.LAST
        assert waves.bad_wave_tag({"cmk-rotation-wave": bad}) == bad
    assert waves.bad_wave_tag({"cmk-rotation-wave": "3"}) is None
    steps = [
        Step(consumer("c")),
        Step(consumer("b", **{"cmk-rotation-wave": "10"})),
        Step(consumer("a", **{"cmk-rotation-wave": "2"})),
        Step(consumer("off", **{"cmk-rotation-wave": "0"}), action="opted-out"),
        Step(consumer("cur", **{"cmk-rotation-wave": "2"}), action="already-current"),
    ]
    grouped = waves.group(steps)
    assert [w.label for w in grouped] == ["2", "10", "last"]  # the opted-out wave 0 holds nothing back
    assert [len(w.updates) for w in grouped] == [1, 1, 1] and len(grouped[0].gated) == 2


def test_health_needs_the_new_version_succeeded_and_the_kinds_own_status() -> None:
    assert waves.health_problem(consumer("a"), NEW) is None
    assert "not " + NEW in str(waves.health_problem(consumer("a", version="a" * 32), NEW))
    assert "versionless" in str(waves.health_problem(consumer("a", version=None), NEW))
    assert "Updating" in str(waves.health_problem(consumer("a", state="Updating"), NEW))
    assert waves.health_problem(consumer("a", state=None), NEW) is None  # the kind reports none
    assert "no longer" in str(waves.health_problem(None, NEW))
    assert waves.health_problem(consumer("a"), NEW, lambda c: "encryption status is disabled") == (
        "encryption status is disabled"
    )
    problems = waves.gate_problems(
        [consumer("a"), consumer("b", state="Failed")],
        ["/x/a", "/x/b"],
        NEW,
        lambda c: waves.health_problem(c, NEW),
    )
    assert problems == ["b: provisioning state is Failed, not Succeeded"]


def test_soak_waits_from_the_earlier_waves_verification_and_never_skips() -> None:
    verified = waves.Progress(NEW, "0", NOW - timedelta(minutes=10))
    go = waves.soak(verified, "0", NEW, now=NOW, minutes=0, recheck_seconds=300)
    assert go.wait_seconds == 0 and not go.record
    wait = waves.soak(verified, "0", NEW, now=NOW, minutes=30, recheck_seconds=3600)
    assert wait.wait_seconds == 20 * 60 and wait.started_at == verified.verified_at and not wait.record
    assert waves.soak(verified, "0", NEW, now=NOW, minutes=30, recheck_seconds=60).wait_seconds == 60
    assert (
        waves.soak(
            verified, "0", NEW, now=NOW + timedelta(minutes=21), minutes=30, recheck_seconds=60
        ).wait_seconds
        == 0
    )
    # Progress of another version, an earlier wave, or none at all: the soak starts now.
    for stale in (
        waves.Progress("c" * 32, "0", NOW - timedelta(days=1)),
        waves.Progress(NEW, "0", NOW - timedelta(days=1)),
        None,
    ):
        fresh = waves.soak(stale, "1", NEW, now=NOW, minutes=30, recheck_seconds=3600)
        assert fresh.wait_seconds == 1800 and fresh.started_at == NOW and fresh.record
    later = waves.Progress(NEW, waves.LAST, NOW - timedelta(hours=1))
    assert waves.soak(later, "3", NEW, now=NOW, minutes=30, recheck_seconds=60).wait_seconds == 0


def test_progress_rows_and_messages() -> None:
    row = {"DesiredVersion": NEW, "Wave": "1", "VerifiedAt": "2026-12-01T11:00:00.000Z"}
    assert waves.progress_of(row) == waves.Progress(NEW, "1", NOW - timedelta(hours=1))
    assert waves.progress_of({"Wave": "1"}) is None and waves.progress_of(None) is None
    message = waves.halted_message("1", [f"r{i}: failed" for i in range(7)])
    assert message.startswith("halted after wave 1: r0: failed; ") and message.endswith("(and 2 more)")
    assert "wave 1 starts after the soak" in waves.soaking_message("0", "1", NOW, 30)


@dataclass
class Result:
    target: str
    outcome: str
    error: str | None = None
    error_code: str | None = None
    message: str = ""


def rollout(
    steps: list[Step], outcomes: dict[str, str], **kwargs: Any
) -> tuple[waves.RolloutOutcome, list[list[str]]]:
    applied: list[list[str]] = []
    saved: list[waves.Progress] = []

    def apply(batch: Sequence[Any]) -> list[Result]:
        names = [s.target.rsplit("/", 1)[1] for s in batch]
        applied.append(names)
        return [
            Result(
                s.target,
                outcomes.get(n, "verified"),
                None if outcomes.get(n, "verified") == "verified" else "refused",
            )
            for s, n in zip(batch, names, strict=True)
        ]

    run = waves.Rollout(
        waves.group(steps),
        NEW,
        apply=apply,
        read_back=lambda batch: [consumer(s.target.rsplit("/", 1)[1]) for s in batch],
        health=lambda c: waves.health_problem(c, NEW),
        hold=lambda step, code, message: Result(step.target, "skipped", message, code),
        load=lambda: saved[-1] if saved else None,
        save=saved.append,
        now=lambda: NOW,
        record=lambda kind, **fields: None,
        **kwargs,
    ).run()
    return run, applied


def test_rollout_halts_after_a_failed_wave_and_touches_nothing_later() -> None:
    steps = [
        Step(consumer(n, version="a" * 32, **({"cmk-rotation-wave": w} if w else {})))
        for n, w in (("a", "0"), ("b", "1"), ("c", "1"), ("d", None))
    ]
    outcome, applied = rollout(steps, {"b": "failed"})
    assert applied == [["a"], ["b", "c"]]
    assert outcome.halted == "halted after wave 1: b: refused"
    held = outcome.results[steps[3].target]
    assert held.outcome == "skipped" and held.error_code == waves.WAVE_HALTED


def test_rollout_soaks_before_the_next_wave() -> None:
    steps = [
        Step(consumer(n, version="a" * 32, **{"cmk-rotation-wave": w})) for n, w in (("a", "0"), ("b", "1"))
    ]
    outcome, applied = rollout(steps, {}, soak_minutes=15, recheck_seconds=600)
    assert applied == [["a"]] and outcome.wait_seconds == 600 and outcome.halted is None and outcome.soaking
    assert outcome.results[steps[1].target].error_code == waves.WAVE_SOAKING


def test_soak_setting_defaults_to_0_and_is_bounded_by_the_queue() -> None:
    env = {
        "ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.net",
        "ROTATION_SUBSCRIPTIONS": "00000000-0000-0000-0000-00000000000a",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    }
    assert load_settings(env).wave_soak_minutes == 0
    assert load_settings({**env, "ROTATION_WAVE_SOAK_MINUTES": "60"}).wave_soak_minutes == 60
    for bad in ("-1", "10081", "soon"):
        with pytest.raises(ConfigError, match="ROTATION_WAVE_SOAK_MINUTES"):
            load_settings({**env, "ROTATION_WAVE_SOAK_MINUTES": bad})


def test_rollout_leaves_the_soak_to_the_request_that_claimed_it() -> None:
    steps = [
        Step(consumer(n, version="a" * 32, **{"cmk-rotation-wave": w})) for n, w in (("a", "0"), ("b", "1"))
    ]
    outcome, applied = rollout(steps, {}, soak_minutes=15, recheck_seconds=600, claim=lambda seconds: False)
    assert applied == [["a"]] and outcome.soaking and outcome.wait_seconds == 0
    assert outcome.note is not None and outcome.note.endswith("another queued request carries the rollout on")


def test_every_kind_answers_the_healthy_hook_and_only_the_registry_and_postgres_override_it() -> None:
    """`healthy` is a KindDefaults member (default: healthy), read through `unhealthy`, so a kind
    that says nothing about it, or does not inherit the defaults at all, never holds a wave back."""
    from rotation.azure.kinds import KindDefaults, all_kinds, unhealthy
    from rotation.azure.kinds.flexible_servers import PostgresFlexibleServers
    from rotation.azure.kinds.registry import Registries

    class Bare:  # implements the protocol without KindDefaults
        kind = "bare"

    canary = consumer("c1")
    assert KindDefaults().healthy(canary) is None and unhealthy(Bare(), canary) is None
    for kind in all_kinds():
        assert callable(getattr(kind, "healthy", None)), kind.kind
        overrides = type(kind).healthy is not KindDefaults.healthy  # type: ignore[attr-defined]  # optional member
        # the services that report their own CMK status on the resource
        assert overrides == isinstance(kind, Registries | PostgresFlexibleServers), kind.kind
    other = parse_key_id(f"{KEY}/{'c' * 32}").id
    moved = Consumer(
        "registry",
        canary.resource_id,
        canary.key,
        "westeurope",
        {},
        provisioning_state="Succeeded",
        extra={"versionedKeyIdentifier": other},
    )
    assert "versionedKeyIdentifier" in str(unhealthy(Registries(), moved))
    assert waves.health_problem(moved, NEW, lambda shown: unhealthy(Registries(), shown))


@pytest.mark.parametrize("tag", ["\u00b2", "\u0663", "1\u00b2", "\u2460", "\U0001d7d9", "\u07c1"])
def test_a_wave_tag_isdigit_accepts_but_int_cannot_read_goes_last(tag: str) -> None:
    # issue 21 item 5: "²".isdigit() is true and int("²") raises: one tag failed the whole key
    assert waves.wave_of({"cmk-rotation-wave": tag}) == waves.LAST
    assert waves.bad_wave_tag({"cmk-rotation-wave": tag}) == tag
    [warning] = waves.tag_warnings([consumer("odd", **{"cmk-rotation-wave": tag})])
    assert "last wave" in warning
    assert [w.label for w in waves.group([Step(consumer("odd", **{"cmk-rotation-wave": tag}))])] == ["last"]
