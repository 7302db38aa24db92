"""Microsoft.Resources `Resources_List`: `GET /subscriptions/{id}/resources` (api-version
2024-11-01 shapes), what `az acr show -n NAME` without a resource group reads to find the
registry (`$filter=resourceType eq 'Microsoft.ContainerRegistry/registries'`). Every emulated
resource of the subscription, as `GenericResourceExpanded` (id, name, type, location, tags, and
kind, sku and identity where the resource has them; no properties, as ARM lists them), in ARM's
pages. `$filter` knows `resourceType eq '<type>'`; any other filter is refused (400), never
ignored."""

from __future__ import annotations

import re
from typing import Any

from .arm import ArmService, arm_error
from .http import Request, Response

_LISTED = ("id", "name", "type", "location", "tags", "kind", "sku", "identity")
_BY_TYPE = re.compile(r"^\s*resourceType\s+eq\s+'(?P<type>[^']+)'\s*$", re.IGNORECASE)


class Resources:
    def __init__(self, arm: ArmService) -> None:
        self.arm = arm
        arm.router.add("GET", r"/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resources/?", self.list)

    def list(self, request: Request, sub: str) -> Response:
        wanted = request.query_ci("$filter")
        types = sorted(self.arm.graph_sources)
        if wanted:
            match = _BY_TYPE.match(wanted)
            if not match:
                return arm_error(
                    400,
                    "InvalidFilterInQueryString",
                    f"The $filter '{wanted}' is not supported here (the emulator knows resourceType eq '<type>').",
                )
            types = [t for t in types if t == match["type"].lower()]
        items: list[dict[str, Any]] = []
        for resource_type in types:
            for body in self.arm.graph_sources[resource_type]({sub.lower()}):
                items.append({k: body[k] for k in _LISTED if k in body})
        items.sort(key=lambda item: str(item["id"]).lower())
        return self.arm.page(request, items)
