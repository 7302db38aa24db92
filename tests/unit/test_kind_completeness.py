"""Every registered consumer kind is whole (issue 24 item 1): the doors accept its type, the
emulator serves it, docs/scenario.md names its scenario entry, the custom role grants its ARM
actions and README.md has its row. A kind added to `all_kinds()` without one of them fails
`test_every_registered_kind_is_complete`, naming what is missing; the fakes below show the
check refusing what it should."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

import rotation.azure.kinds as kinds
from emulator.app import EmulatorApp
from emulator.http import Request
from emulator.scenario import ENTRY_TYPES
from rotation.azure.kinds import TargetKind, accepted_types, all_kinds
from rotation.azure.kinds.registry import Registries
from rotation.config import load_settings
from rotation.doors import web
from rotation.doors.cli.context import parse_targets
from rotation.model.ids import InvalidId, parse_key_id
from rotation.model.request import InvalidRequest, new_request
from rotation.service import Service
from rotation.storage.queue import decode, to_message

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "infra" / "modules" / "custom-roles.bicep"
SUB = "00000000-0000-0000-0000-00000000000a"
ENV = {
    "ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.net",
    "ROTATION_SUBSCRIPTIONS": SUB,
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}
KEY = parse_key_id("https://contoso-cmk.vault.azure.net/keys/k")


def target_of(kind: TargetKind) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg-1/providers/{kind.resource_type}/thing-1"


def door_refusals(kind: TargetKind) -> list[str]:
    """Each door given a target of the kind's type, as a user gives it: the CLI's --target,
    the HTTP body's `targets`, a queue message as the worker decodes it."""
    target = target_of(kind)
    refused = []
    try:
        parse_targets((target,))
    except click.BadParameter:
        refused.append("CLI --target")
    try:
        web.read_targets(Service(load_settings(ENV)), [target])
    except web.ApiError:
        refused.append("HTTP targets")
    message = json.dumps({**to_message(new_request(KEY, "cli", "me")), "targets": [target]})
    try:
        decode(message, accepted_types())
    except (InvalidRequest, InvalidId):
        refused.append("queue message")
    return refused


def emulator_serves(kind: TargetKind) -> bool:
    """The emulator routes a GET of one resource and a list by subscription of the type."""
    router = EmulatorApp().arm.router
    paths = (target_of(kind), f"/subscriptions/{SUB}/providers/{kind.resource_type}")
    requests = (Request("GET", "management.azure.com", p, {}, {}, b"") for p in paths)
    return all(router.dispatch(request) is not None for request in requests)


def documented_scenario_entries() -> set[str]:
    text = (REPO / "docs" / "scenario.md").read_text()
    section = text.split("## Top-level fields", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))


def role_actions() -> set[str]:
    """The consumer role's actions: every quoted action in its variables (some granted only when the
    deployment asks: the redeploy policy, `hdInsightRotation`)."""
    text = ROLES.read_text()
    found: set[str] = set()
    names = (
        "consumerActions",
        "hdInsightRotateActions",
        "containerGroupRedeployActions",
        "containerGroupVnetActions",
    )
    for name in names:
        block = re.search(rf"^var {name} = \[(.*?)^\]", text, re.MULTILINE | re.DOTALL)
        found.update(re.findall(r"'([^']+)'", block.group(1) if block else ""))
    return found


def readme_kinds() -> set[str]:
    """Kinds named in the first cell of README.md's table rows: `(kind `x`)`, `(kinds `a`, `b`)`."""
    named: set[str] = set()
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("| "):
            first = line.split("|")[1]
            for mention in re.findall(r"\bkinds? ((?:`[\w-]+`(?:, )?)+)", first):
                named.update(re.findall(r"`([\w-]+)`", mention))
    return named


def missing_parts(kind: TargetKind) -> list[str]:
    missing = [f"a door accepting {kind.resource_type} ({door})" for door in door_refusals(kind)]
    if not emulator_serves(kind):
        missing.append(f"an emulator route for {kind.resource_type} (emulator/)")
    entry = next((e for e, t in ENTRY_TYPES.items() if t.lower() == kind.resource_type.lower()), None)
    if entry is None or entry not in documented_scenario_entries():
        missing.append(f"a scenario entry for {kind.resource_type} (emulator/scenario.py, docs/scenario.md)")
    actions = set(getattr(kind, "arm_actions", ()))
    if f"{kind.resource_type}/read" not in actions or not actions <= role_actions():
        missing.append(f"its ARM actions in {ROLES.relative_to(REPO)} ({sorted(actions - role_actions())})")
    if kind.kind not in readme_kinds():
        missing.append(f"its README.md row (kind `{kind.kind}`)")
    return missing


@pytest.mark.parametrize("kind", all_kinds(), ids=lambda k: k.kind)
def test_every_registered_kind_is_complete(kind: TargetKind) -> None:
    missing = missing_parts(kind)
    assert not missing, f"kind {kind.kind} lacks: " + "; ".join(missing)


# -- the check itself: a kind missing its parts is refused, each part named
class Gadgets(Registries):
    """A kind no part of the house knows."""

    kind = "gadget"
    resource_type = "Microsoft.Gadgets/gadgets"
    arm_actions = ("Microsoft.Gadgets/gadgets/read", "Microsoft.Gadgets/gadgets/write")


@pytest.fixture
def gadgets_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Gadgets added to the one list of kinds, as one more line in `all_kinds()` would."""
    real = kinds.all_kinds
    monkeypatch.setattr(kinds, "all_kinds", lambda settings=None: [*real(settings), Gadgets()])
    kinds.accepted_types.cache_clear()
    yield
    monkeypatch.undo()
    kinds.accepted_types.cache_clear()


def test_a_registered_kind_without_its_parts_is_caught(gadgets_registered: Any) -> None:
    missing = missing_parts(Gadgets())
    assert not any("door" in part for part in missing), "the doors follow the registry"
    assert [part.split(" ", 2)[1] for part in missing] == ["emulator", "scenario", "ARM", "README.md"]


def test_an_unregistered_kind_has_no_door() -> None:
    refused = [p for p in missing_parts(Gadgets()) if "door" in p]
    assert len(refused) == 3, refused


class ShortRegistries(Registries):
    arm_actions = (
        "Microsoft.ContainerRegistry/registries/read",
        "Microsoft.ContainerRegistry/registries/delete",
    )


class RenamedRegistries(Registries):
    kind = "acr"


@pytest.mark.parametrize(
    ("kind", "part"),
    [(ShortRegistries(), "its ARM actions"), (RenamedRegistries(), "its README.md row")],
    ids=["role actions", "README row"],
)
def test_one_missing_part_is_named(kind: TargetKind, part: str) -> None:
    (missing,) = missing_parts(kind)
    assert missing.startswith(part)
