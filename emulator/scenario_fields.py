"""The field rules every scenario entry shares (docs/scenario.md): required fields, ARM ids of
the expected type, attached identities, and loading a list entry by id. scenario.py and
scenario_cmk.py both build on these, so neither imports the other back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .state import ARM_ID, World


class ScenarioError(ValueError):
    """The scenario is malformed; the message names the offending field."""


class Record(Protocol):
    id: str


def load_entries[R: Record](
    scenario: dict[str, Any],
    entry: str,
    load: Callable[[dict[str, Any], str, World], R],
    world: World,
    into: dict[str, R],
) -> None:
    """Load each item of the list `entry` into `into`, by lower-case id; `where` names the item."""
    for index, spec in enumerate(scenario.get(entry) or []):
        record = load(spec, f"{entry}[{index}]", world)
        into[record.id.lower()] = record


def require(mapping: dict[str, Any], name: str, where: str) -> Any:
    if not isinstance(mapping, dict) or name not in mapping or mapping[name] in (None, ""):
        raise ScenarioError(f"{where}: '{name}' is required")
    return mapping[name]


def arm_id(value: Any, provider: str, rtype: str, where: str) -> str:
    match = ARM_ID.fullmatch(value) if isinstance(value, str) else None
    if not match or match["provider"].lower() != provider.lower() or match["type"].lower() != rtype.lower():
        raise ScenarioError(
            f"{where}: expected an id like /subscriptions/<sub>/resourceGroups/<rg>/providers/"
            f"{provider}/{rtype}/<name>, got {value!r}"
        )
    return value


def attached_identities(spec: dict[str, Any], where: str, world: World) -> list[str]:
    ids = list(spec.get("identities") or [])
    for index, identity_id in enumerate(ids):
        arm_id(
            identity_id, "Microsoft.ManagedIdentity", "userAssignedIdentities", f"{where}.identities[{index}]"
        )
        world.identity(identity_id)
    return ids
