"""Managed identity token endpoint (App Service protocol) and bearer token checks.

`DefaultAzureCredential` finds ``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER`` and asks
``GET {endpoint}?api-version=2019-08-01&resource=...[&client_id=...]`` with the header
``X-IDENTITY-HEADER``. Tokens are opaque random strings remembered with their audience and
caller, so Key Vault and ARM can refuse a missing, unknown, expired or wrong-audience token.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from .http import Request, Response

TOKEN_LIFETIME = 24 * 3600
DEFAULT_CALLER = "00000000-0000-0000-0000-00000000f00d"  # the function's identity when no client_id is asked


@dataclass(frozen=True)
class Token:
    audience: str  # normalised: no trailing slash, lower case
    caller: str
    expires_on: int


def normalise_audience(resource: str) -> str:
    return resource.strip().rstrip("/").lower().removesuffix("/.default")


class TokenIssuer:
    def __init__(self, header_secret: str | None = None) -> None:
        self.header_secret = header_secret or secrets.token_hex(16)
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()
        self.issued = 0

    def handle(self, request: Request) -> Response:
        if request.headers.get("x-identity-header") != self.header_secret:
            return Response.json(
                401, {"error": "unauthorized", "error_description": "X-IDENTITY-HEADER mismatch"}
            )
        if request.query.get("api-version") != "2019-08-01":
            return Response.json(
                400, {"error": "invalid_request", "error_description": "api-version 2019-08-01"}
            )
        resource = request.query.get("resource")
        if not resource:
            return Response.json(
                400, {"error": "invalid_request", "error_description": "resource is required"}
            )
        caller = request.query.get("client_id") or request.query.get("principal_id") or DEFAULT_CALLER
        value = secrets.token_urlsafe(32)
        expires_on = int(time.time()) + TOKEN_LIFETIME
        with self._lock:
            self._tokens[value] = Token(normalise_audience(resource), caller.lower(), expires_on)
            self.issued += 1
        return Response.json(
            200,
            {
                "access_token": value,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": caller,
            },
        )

    def check(self, request: Request, audiences: set[str]) -> Token | None:
        """The token on the request if it is known, unexpired and for one of ``audiences``."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            return None
        with self._lock:
            token = self._tokens.get(value.strip())
        if token is None or token.expires_on < time.time() or token.audience not in audiences:
            return None
        return token
