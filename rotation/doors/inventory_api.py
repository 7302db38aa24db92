"""GET /api/inventory?vault=&key=&kind= (role Rotation.Plan): every CMK consumer in
ROTATION_SUBSCRIPTIONS, what it holds and what a run would do now, plus each key's versions.
Read only; rows for keys in vaults outside ROTATION_ALLOWED_VAULTS are marked `outside`.
Routing, roles, the door budget and rejection audit are rotation/doors/api.py's: every refusal
here is a `Refused` (a status, a code and one sentence) that `Api.inventory` answers and audits
like any other route's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rotation.estate.inventory import Filters, InvalidFilter, collect
from rotation.model.errors import RotationError
from rotation.model.ids import InvalidId, KeyRef, parse_key_id
from rotation.service import Service

PARAMETERS = {"vault", "key", "kind"}
MAX_VALUE = 2048  # longer than any key URL or vault host: refused before it is parsed


class Refused(RotationError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def inventory(service: Service, parameters: Mapping[str, str]) -> dict[str, Any]:
    """The estate as the HTTP answer's body; raises Refused for a request it will not answer."""
    query = dict(parameters)
    unknown = set(query) - PARAMETERS
    if unknown:
        raise Refused(400, "UnknownParameter", f"unknown query parameter(s) {sorted(unknown)[:10]}")
    if any(len(value) > MAX_VALUE for value in query.values()):
        raise Refused(400, "InvalidQuery", f"query values are at most {MAX_VALUE} characters")
    try:
        filters = Filters.parse(
            query.get("vault") or None,
            _key(query.get("key")),
            query.get("kind") or None,
            service.reconciler.kinds,
        )
    except InvalidFilter as exc:
        raise Refused(400, "InvalidFilter", str(exc)) from None
    estate = collect(service.reconciler, filters)
    if estate.unreachable and not estate.rows:
        raise Refused(502, "Unreachable", "ARM or Key Vault could not be read; nothing to list")
    return estate.to_dict()


def _key(value: str | None) -> KeyRef | None:
    if not value:
        return None
    try:
        return parse_key_id(value)
    except InvalidId as exc:
        raise Refused(400, "InvalidKeyId", f"key: {exc}") from None
