"""GET /api/inventory?vault=&key=&kind= (role Rotation.Plan): every CMK consumer in
ROTATION_SUBSCRIPTIONS, what it holds and what a run would do now, plus each key's versions.
Read only; rows for keys in vaults outside ROTATION_ALLOWED_VAULTS are marked `outside`.
Routing, roles, rejection audit and status codes are rotation/doors/api.py's."""

from __future__ import annotations

from rotation.core.inventory import Filters, InvalidFilter, collect
from rotation.doors.api import ApiError, ApiRequest, ApiResponse
from rotation.model.ids import InvalidId, parse_key_id
from rotation.service import Service

PARAMETERS = {"vault", "key", "kind"}


def inventory(service: Service, request: ApiRequest) -> ApiResponse:
    query = dict(request.query)
    unknown = set(query) - PARAMETERS
    if unknown:
        raise ApiError(400, "UnknownParameter", f"unknown query parameter(s) {sorted(unknown)}")
    try:
        key = parse_key_id(query["key"]) if query.get("key") else None
        filters = Filters.parse(
            query.get("vault") or None, key, query.get("kind") or None, service.reconciler.kinds
        )
    except (InvalidId, InvalidFilter) as exc:
        raise ApiError(400, "InvalidFilter", str(exc)) from None
    estate = collect(service.reconciler, filters)
    if estate.unreachable and not estate.rows:
        raise ApiError(502, "Unreachable", "ARM or Key Vault could not be read; nothing to list")
    return ApiResponse(200, estate.to_dict())
