"""A service's own platform tokens: client credentials with ``private_key_jwt`` (RFC 7523).

A service that acts as the system it is (welfare writing into the journal) asks identity for a
token like any other system client: a client assertion signed with its private key (a mounted
JWK), for one audience and the scopes it needs. Tokens are kept until shortly before they
expire; a refused or failed request is a 503 for the caller (nothing was written).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from akson_common.errors import ServiceUnavailable

log = logging.getLogger("akson.credentials")
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# a token is renewed this long before it expires
RENEW_SECONDS = 30.0
ASSERTION_SECONDS = 60


class ClientCredentials:
    def __init__(
        self,
        http: httpx.AsyncClient,
        token_endpoint: str,
        client_id: str,
        *,
        key_file: str = "",
        key: str = "",
    ) -> None:
        """The private key: ``key`` (a JWK's JSON), or read from ``key_file`` when needed."""
        self.http = http
        self.token_endpoint = token_endpoint
        self.client_id = client_id
        self.key_file = key_file
        self.key = key
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    def assertion(self) -> str:
        document = json.loads(self.key or Path(self.key_file).read_text())
        key = ECKey.import_key(document) if document.get("kty") == "EC" else None
        signing = key or RSAKey.import_key(document)
        algorithm = "ES256" if key is not None else "RS256"
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_endpoint,
            "iat": now,
            "exp": now + ASSERTION_SECONDS,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": algorithm, **({"kid": signing.kid} if signing.kid else {})}
        return jwt.encode(header, claims, signing)

    async def token(self, audience: str, scope: str) -> str:
        """A bearer token for ``audience`` with ``scope`` (space-separated)."""
        key = (audience, scope)
        held = self._tokens.get(key)
        if held is not None and held[1] > time.monotonic():
            return held[0]
        async with self._lock:
            held = self._tokens.get(key)
            if held is not None and held[1] > time.monotonic():
                return held[0]
            if not (self.token_endpoint and (self.key or self.key_file)):
                raise ServiceUnavailable("this service has no client credentials configured")
            form = {
                "grant_type": "client_credentials",
                "client_assertion_type": JWT_BEARER,
                "client_assertion": self.assertion(),
                "audience": audience,
                "scope": scope,
            }
            try:
                response = await self.http.post(self.token_endpoint, data=form, timeout=5.0)
                response.raise_for_status()
                answer = response.json()
                token = str(answer["access_token"])
                lifetime = float(answer.get("expires_in", 60))
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
                log.warning("no token from identity", extra={"error": type(error).__name__})
                raise ServiceUnavailable("the token service did not issue a token") from None
            self._tokens[key] = (token, time.monotonic() + max(lifetime - RENEW_SECONDS, 1.0))
            return token
