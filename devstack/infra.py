"""The vault event subscription as infra/ deploys it, read from the Bicep itself so the local
Event Grid never drifts from production: its name, event-type filter, delivery schema,
`maxDeliveryAttempts`, `eventTimeToLiveInMinutes` and dead-letter container."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

INFRA = Path(__file__).resolve().parent.parent / "infra"


@dataclass(frozen=True)
class EventSubscription:
    name: str
    included_event_types: tuple[str, ...]
    delivery_schema: str
    max_delivery_attempts: int
    ttl_minutes: int
    dead_letter_container: str


def _one(pattern: str, text: str, where: Path) -> str:
    match = re.search(pattern, text, re.MULTILINE | re.DOTALL)
    if not match:
        raise ValueError(f"{where}: cannot find {pattern!r}; did the Bicep change shape?")
    return match[1]


def _param_default(name: str, text: str, where: Path) -> str:
    return _one(rf"^param {name} \w+ = '?([^'\n]+?)'?\s*$", text, where)


def event_subscription(infra: Path = INFRA) -> EventSubscription:
    main, module, storage = (
        infra / "main.bicep",
        infra / "modules" / "vault-event-subscription.bicep",
        infra / "modules" / "storage.bicep",
    )
    main_text, module_text, storage_text = main.read_text(), module.read_text(), storage.read_text()
    types_block = _one(r"includedEventTypes:\s*\[(.*?)\]", module_text, module)
    return EventSubscription(
        name=_param_default("eventSubscriptionName", main_text, main),
        included_event_types=tuple(re.findall(r"'([^']+)'", types_block)),
        delivery_schema=_one(r"eventDeliverySchema:\s*'([^']+)'", module_text, module),
        max_delivery_attempts=int(_param_default("maxDeliveryAttempts", main_text, main)),
        ttl_minutes=int(_param_default("eventTimeToLiveInMinutes", main_text, main)),
        dead_letter_container=_one(r"^var deadLetterContainerName = '([^']+)'", storage_text, storage),
    )
