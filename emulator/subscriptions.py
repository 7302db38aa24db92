"""The subscription and tenant routes `az login` and `az account` read: `GET /subscriptions`,
`GET /subscriptions/{id}` and `GET /tenants` (Microsoft.Resources, api-version 2022-12-01 shapes).
The subscriptions are the ones the scenario's resources live in."""

from __future__ import annotations

from typing import Any

from .arm import ArmService, arm_error
from .http import Request, Response
from .identity import TENANT

_POLICIES = {
    "locationPlacementId": "Public_2014-09-01",
    "quotaId": "PayAsYouGo_2014-09-01",
    "spendingLimit": "Off",
}


def _subscription(subscription_id: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{subscription_id}",
        "authorizationSource": "RoleBased",
        "subscriptionId": subscription_id,
        "tenantId": TENANT,
        "displayName": f"emulated-{subscription_id[-4:]}",
        "state": "Enabled",
        "subscriptionPolicies": _POLICIES,
    }


class Subscriptions:
    def __init__(self, arm: ArmService) -> None:
        self.arm = arm
        arm.router.add("GET", r"/subscriptions/?", self.list)
        arm.router.add("GET", r"/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/?", self.get)
        arm.router.add("GET", r"/tenants/?", self.tenants)

    def list(self, request: Request) -> Response:
        with self.arm.world.lock:
            subscriptions = sorted(self.arm.world.subscriptions)
        return self.arm.page(request, [_subscription(s) for s in subscriptions])

    def get(self, request: Request, sub: str) -> Response:
        with self.arm.world.lock:
            known = sub.lower() in self.arm.world.subscriptions
        if not known:
            return arm_error(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
        return Response.json(200, _subscription(sub.lower()))

    def tenants(self, request: Request) -> Response:
        tenant = {
            "id": f"/tenants/{TENANT}",
            "tenantId": TENANT,
            "tenantCategory": "Home",
            "displayName": "Emulated tenant",
            "defaultDomain": "emulated.onmicrosoft.com",
            "tenantType": "AAD",
        }
        return Response.json(200, {"value": [tenant]})
