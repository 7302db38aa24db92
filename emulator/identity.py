"""Managed identity token endpoint (App Service protocol) and bearer token checks.

`DefaultAzureCredential` finds ``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER`` and asks
``GET {endpoint}?api-version=2019-08-01&resource=...[&client_id=...]`` with the header
``X-IDENTITY-HEADER``. Tokens are JWTs shaped as Entra issues them (``aud``, ``iss``, ``tid``,
``oid``, ``appid``, ``iat``/``nbf``/``exp``), signed RS256 with a key the emulator makes at start,
because az and MSAL read claims from them; each is also remembered with its audience and caller,
so Key Vault and ARM can refuse a missing, unknown, expired or wrong-audience token.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .http import Request, Response

TOKEN_LIFETIME = 24 * 3600
DEFAULT_CALLER = "00000000-0000-0000-0000-00000000f00d"  # the function's identity when no client_id is asked
TENANT = "72f988bf-0000-4000-8000-00000000c0de"  # the emulated Entra tenant (Key Vault's challenge names it)


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
        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._key_id = uuid.uuid4().hex
        # client id -> principal (object) id, for the `oid` claim; the app wires in the estate's identities
        self.principal_of: Callable[[str], str] = lambda client_id: client_id

    def public_key_pem(self) -> bytes:
        return self._signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def _jwt(self, resource: str, caller: str, issued: int, expires_on: int) -> str:
        claims = {
            "aud": resource.removesuffix("/.default"),
            "iss": f"https://sts.windows.net/{TENANT}/",
            "iat": issued,
            "nbf": issued,
            "exp": expires_on,
            "tid": TENANT,
            "oid": self.principal_of(caller),
            "sub": self.principal_of(caller),
            "appid": caller,
            "appidacr": "2",
            "idtyp": "app",
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        return jwt.encode(claims, self._signing_key, algorithm="RS256", headers={"kid": self._key_id})

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
        issued = int(time.time())
        expires_on = issued + TOKEN_LIFETIME
        value = self._jwt(resource, caller, issued, expires_on)
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
