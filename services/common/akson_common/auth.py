"""Bearer-token verification against the identity service's JWKS.

Algorithm allow-list (never ``none``, never HMAC with a public key), issuer, audience, expiry
with at most 60 s leeway; the result is a typed :class:`Principal`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from fastapi import Depends, Request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, ConfigDict, ValidationError

from akson_common.errors import Unauthorized

PrincipalKind = Literal["practitioner", "citizen", "system"]


class Principal(BaseModel):
    """Who is asking, as the verified token says; this is the policy input's ``subject``."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: PrincipalKind
    hpr_number: str | None = None
    profession: str | None = None
    organisation: str | None = None
    unit: str | None = None
    municipality: str | None = None
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        scope = claims.get("scope", "")
        return cls(
            id=claims["sub"],
            kind=claims.get("akson_kind", ""),
            hpr_number=claims.get("hpr_number"),
            profession=claims.get("profession"),
            organisation=claims.get("organisation"),
            unit=claims.get("unit"),
            municipality=claims.get("municipality"),
            roles=tuple(claims.get("roles", ())),
            scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        )


class JwksSource:
    """The issuer's public keys, from a file (local runs) or a URL, refreshed on an unknown kid."""

    def __init__(
        self,
        *,
        url: str = "",
        file: str = "",
        min_refresh_seconds: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not (url or file):
            raise ValueError("a JWKS url or file is required")
        self.url, self.file = url, file
        self.client = client
        self.min_refresh_seconds = min_refresh_seconds
        self._keys: KeySet | None = None
        self._fetched_at = 0.0

    async def _load(self) -> KeySet:
        if self.file:
            document = json.loads(Path(self.file).read_text())
        else:
            client = self.client or httpx.AsyncClient(timeout=2.0)
            response = await client.get(self.url)
            response.raise_for_status()
            document = response.json()
        self._fetched_at = time.monotonic()
        return KeySet.import_key_set(document)

    async def keys(self, kid: str | None) -> KeySet:
        stale = time.monotonic() - self._fetched_at >= self.min_refresh_seconds
        if self._keys is None or (stale and not _has_kid(self._keys, kid)):
            self._keys = await self._load()
        return self._keys


def _has_kid(keys: KeySet, kid: str | None) -> bool:
    return any(key.kid == kid for key in keys.keys)


class TokenVerifier:
    def __init__(
        self,
        jwks: JwksSource,
        *,
        issuer: str,
        audience: str,
        algorithms: tuple[str, ...],
        leeway_seconds: int,
    ) -> None:
        if not 0 <= leeway_seconds <= 60:
            raise ValueError("leeway must be between 0 and 60 seconds")
        self.jwks = jwks
        self.algorithms = [a for a in algorithms if a not in {"none"} and not a.startswith("HS")]
        self.claims = jwt.JWTClaimsRegistry(
            leeway=leeway_seconds,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    async def verify(self, token: str) -> Principal:
        try:
            header = json.loads(_b64decode(token.split(".")[0]))
            keys = await self.jwks.keys(header.get("kid"))
            decoded = jwt.decode(token, keys, algorithms=self.algorithms)
            self.claims.validate(decoded.claims)
            return Principal.from_claims(decoded.claims)
        except (JoseError, ValueError, KeyError, IndexError, ValidationError) as error:
            raise Unauthorized(f"invalid token: {_reason(error)}") from None


def _b64decode(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _reason(error: Exception) -> str:
    if isinstance(error, JoseError):
        return error.error
    return "malformed"


async def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the verified caller, or 401."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required")
    verifier: TokenVerifier = request.app.state.token_verifier
    return await verifier.verify(token.strip())


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
