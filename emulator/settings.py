"""Knobs that shape the emulator's timing and paging; changed over the admin API."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Settings:
    """Knobs that shape timing and paging; changed over the admin API."""

    lro_seconds: float = 1.0  # how long a write takes to finish
    retry_after: int = 1  # Retry-After on LRO answers; whole seconds, as ARM sends (the SDKs parse an int)
    arm_page_size: int = 100
    keyvault_page_size: int = 25
    event_grid_time_scale: float = 1.0  # Event Grid's retry schedule and TTL, compressed by this factor
    # Subscriptions whose resources every subscription-scoped list also answers with, as a
    # hostile proxy or a broken ARM might (tests of the product's subscription check).
    lists_also_answer: tuple[str, ...] = ()
    # namespace (lower case) -> the shape its long-running writes answer in (arm.LRO_SHAPES);
    # unset: each resource provider's own
    lro_shapes: dict[str, str] = field(default_factory=dict)

    def update(self, values: dict[str, Any]) -> None:
        mapping = {
            "lroSeconds": "lro_seconds",
            "retryAfter": "retry_after",
            "armPageSize": "arm_page_size",
            "keyVaultPageSize": "keyvault_page_size",
            "eventGridTimeScale": "event_grid_time_scale",
            "listsAlsoAnswer": "lists_also_answer",
            "lroShapes": "lro_shapes",
        }
        unknown = set(values) - set(mapping)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(mapping)}")
        for name, attribute in mapping.items():
            if name in values:
                current = getattr(self, attribute)
                value = values[name]
                if isinstance(current, dict):
                    setattr(self, attribute, _shapes(value))
                    continue
                if isinstance(current, tuple):  # a list of lower-case ids
                    value = [str(v).lower() for v in value] if isinstance(value, list) else None
                    if value is None:
                        raise ValueError(f"{name}: a list of subscription ids")
                setattr(self, attribute, type(current)(value))
        if (
            self.arm_page_size < 1
            or self.keyvault_page_size < 1
            or self.lro_seconds < 0
            or self.retry_after < 0
            or not 0 < self.event_grid_time_scale <= 1
        ):
            raise ValueError(
                "page sizes must be positive; lroSeconds and retryAfter not negative; "
                "eventGridTimeScale in (0, 1]"
            )

    def adopt(self, other: Settings) -> None:
        """Every knob as `other` has it, in place: the services hold this object."""
        for knob in fields(self):
            setattr(self, knob.name, getattr(other, knob.name))

    def describe(self) -> dict[str, Any]:
        return {
            "lroSeconds": self.lro_seconds,
            "retryAfter": self.retry_after,
            "armPageSize": self.arm_page_size,
            "keyVaultPageSize": self.keyvault_page_size,
            "eventGridTimeScale": self.event_grid_time_scale,
            "listsAlsoAnswer": list(self.lists_also_answer),
            "lroShapes": dict(self.lro_shapes),
        }


LRO_SHAPES = ("async201", "async202", "both202", "location202", "body200")


def _shapes(value: Any) -> dict[str, str]:
    """`{"Microsoft.Compute": "location202", ...}`: a write's answer shape per namespace."""
    if not isinstance(value, dict) or not all(v in LRO_SHAPES for v in value.values()):
        raise ValueError(f"lroShapes: an object of namespace -> one of {list(LRO_SHAPES)}")
    return {str(k).lower(): str(v) for k, v in value.items()}
