"""Bearer-token verification against the identity service's JWKS.

Algorithm allow-list (never ``none``, never HMAC with a public key), issuer, audience, expiry
with at most 60 s leeway; the result is a typed :class:`Principal`. Accounts the identity
service disabled (``identity.account.disabled``) are kept in each service's own denylist, so a
suspended practitioner's still-valid tokens are refused everywhere within seconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import httpx
from cachetools import TLRUCache
from fastapi import Depends, Request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, ConfigDict, ValidationError
from pymongo import IndexModel

from akson_common.db import Database
from akson_common.errors import ServiceUnavailable, Unauthorized
from akson_common.events import (
    ACCOUNT_DISABLED,
    AccountDisabledV1,
    Delivery,
    Outcome,
    Subscriptions,
)

# a token for the platform FHIR base (the gateway) is good on these routes of its owners only
FHIR_ROUTES = "/fhir/"
VERIFIED_TOKENS = 10_000
VERIFIED_FOR_SECONDS = 60.0

PrincipalKind = Literal["practitioner", "citizen", "system"]


class Principal(BaseModel):
    """Who is asking, as the verified token says; this is the policy input's ``subject``.

    ``app``: the client the token was issued to (a SMART app or a system client; in the
    decision log, so auditors see which app made each access); ``scopes``: the granted scopes
    (SMART v2 scopes only narrow what the user may do, in the policy); ``launch_patient`` /
    ``launch_encounter``: the SMART launch context the ``patient/`` scopes are bound to.
    """

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
    app: str | None = None
    launch_patient: str | None = None
    launch_encounter: str | None = None

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
            app=claims.get("client_id"),
            launch_patient=claims.get("patient"),
            launch_encounter=claims.get("encounter"),
        )

    def to_claims(self) -> dict[str, Any]:
        """The token claims :meth:`from_claims` reads back (what the identity service signs)."""
        claims: dict[str, Any] = {"sub": self.id, "akson_kind": self.kind}
        facts = ("hpr_number", "profession", "organisation", "unit", "municipality")
        claims.update({n: getattr(self, n) for n in facts if getattr(self, n) is not None})
        if self.roles:
            claims["roles"] = list(self.roles)
        if self.scopes:
            claims["scope"] = " ".join(self.scopes)
        context = {"client_id": self.app, "patient": self.launch_patient}
        context["encounter"] = self.launch_encounter
        claims.update({name: value for name, value in context.items() if value is not None})
        return claims


class Acting(BaseModel):
    """Who did something, as stored with it (a directive's registrar, a message's sender, a
    device's assigner): the principal's kind and id, and for personnel their HPR number,
    organisation and unit; nothing else of the token."""

    kind: PrincipalKind
    id: str
    hpr_number: str | None = None
    organisation: str | None = None
    unit: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> Self:
        return cls(
            kind=principal.kind,
            id=principal.id,
            hpr_number=principal.hpr_number,
            organisation=principal.organisation,
            unit=principal.unit,
        )


SMART_CAPABILITIES = (
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-v2",
    "permission-patient",
    "permission-user",
    "permission-offline",
    "sso-openid-connect",
)
SMART_SCOPES = (
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "patient/*.cruds",
    "user/*.cruds",
    "system/*.cruds",
)
SMART_GRANT_TYPES = (
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
)
CLIENT_ASSERTION_ALGORITHMS = ("RS256", "PS256", "ES256")


def smart_configuration(issuer: str) -> dict[str, Any]:
    """SMART App Launch 2.x's ``.well-known/smart-configuration`` for the identity service at
    ``issuer``: served by identity and on the FHIR base (the gateway), from this one place."""
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "grant_types_supported": list(SMART_GRANT_TYPES),
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGORITHMS),
        "scopes_supported": list(SMART_SCOPES),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": list(SMART_CAPABILITIES),
    }


class JwksSource:
    """The issuer's public keys, from a file (unit tests) or a URL.

    Refetched when older than ``max_age_seconds`` (so a key the issuer publishes ahead of its
    use is known before it signs) and on an unknown kid, at most once per
    ``min_refresh_seconds`` (so forged kids cannot make us hammer the issuer).
    """

    def __init__(
        self,
        *,
        url: str = "",
        file: str = "",
        min_refresh_seconds: float = 10.0,
        max_age_seconds: float = 300.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not (url or file):
            raise ValueError("a JWKS url or file is required")
        self.url, self.file = url, file
        self.client = client
        self.min_refresh_seconds = min_refresh_seconds
        self.max_age_seconds = max_age_seconds
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
        age = time.monotonic() - self._fetched_at
        unknown = self._keys is not None and not _has_kid(self._keys, kid)
        if (
            self._keys is None
            or age >= self.max_age_seconds
            or (unknown and age >= self.min_refresh_seconds)
        ):
            try:
                self._keys = await self._load()
            except (httpx.HTTPError, OSError, ValueError):
                # Keep verifying with the keys we have; without any, no token can be checked.
                self._fetched_at = time.monotonic()
                if self._keys is None:
                    raise ServiceUnavailable("the token issuer's keys are unavailable") from None
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
        fhir_audience: str = "",
    ) -> None:
        """``fhir_audience``: the platform FHIR base's audience, also accepted (the gateway
        forwards its callers' tokens), but only on FHIR routes (:func:`current_principal`)."""
        if not 0 <= leeway_seconds <= 60:
            raise ValueError("leeway must be between 0 and 60 seconds")
        self.jwks = jwks
        self.audience = audience
        self.fhir_audience = fhir_audience if fhir_audience != audience else ""
        self.algorithms = [a for a in algorithms if a not in {"none"} and not a.startswith("HS")]
        # token -> its verified claims, kept until the token expires but at most
        # ``VERIFIED_FOR_SECONDS`` (a withdrawn signing key stops verifying within that time);
        # a signature check (RSA) was 8 % of the authorised read's CPU (issue 15)
        self._verified: TLRUCache[str, dict[str, Any]] = TLRUCache(
            maxsize=VERIFIED_TOKENS, ttu=_verified_until, timer=_now
        )
        self.claims = jwt.JWTClaimsRegistry(
            leeway=leeway_seconds,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "values": [a for a in (audience, self.fhir_audience) if a]},
            exp={"essential": True},
            sub={"essential": True},
        )

    async def verify_claims(self, token: str) -> dict[str, Any]:
        """The token's claims once signature, algorithm, issuer, audience and expiry hold."""
        cached = self._verified.get(token)
        if cached is not None:
            return dict(cached)
        try:
            keys = await self.jwks.keys(token_header(token).get("kid"))
            decoded = jwt.decode(token, keys, algorithms=self.algorithms)
            self.claims.validate(decoded.claims)
        except (JoseError, ValueError, KeyError, IndexError) as error:
            raise Unauthorized(f"invalid token: {_reason(error)}") from None
        if isinstance(decoded.claims.get("exp"), int | float):
            self._verified[token] = dict(decoded.claims)
        return decoded.claims

    async def verify(self, token: str) -> Principal:
        return principal_of(await self.verify_claims(token))

    def only_for_fhir(self, claims: dict[str, Any]) -> bool:
        """Whether the token names the FHIR base's audience and not this service's own."""
        audiences = claims.get("aud")
        named = {audiences} if isinstance(audiences, str) else set(audiences or ())
        return self.audience not in named


def _now() -> float:
    return time.time()


def _verified_until(_token: str, claims: dict[str, Any], now: float) -> float:
    return min(float(claims["exp"]), now + VERIFIED_FOR_SECONDS)


def principal_of(claims: dict[str, Any]) -> Principal:
    try:
        return Principal.from_claims(claims)
    except (KeyError, ValidationError):
        raise Unauthorized("invalid token: malformed") from None


def token_header(token: str) -> dict[str, Any]:
    """A compact JWS's protected header, unverified (to pick the key by its kid)."""
    return _segment(token, 0)


def unverified_claims(token: str) -> dict[str, Any]:
    """A compact JWS's claims, unverified: only to choose whom to verify it against."""
    return _segment(token, 1)


def _segment(token: str, index: int) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    value = json.loads(_b64decode(parts[index]))
    if not isinstance(value, dict):
        raise ValueError("a JWS segment is not an object")
    return value


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _reason(error: Exception) -> str:
    if isinstance(error, JoseError):
        return error.error
    return "malformed"


DISABLED_ACCOUNTS = "disabled_accounts"


class Denylist:
    """Accounts the identity service disabled, kept from its events in this service's database.

    In the database, not only in memory: Dapr hands each event to one replica of a service, and
    every replica must refuse the account. A token issued at or before the moment its account
    was disabled is refused; one issued after a reinstatement is not.

    Each replica keeps a snapshot of the recent entries, re-read at most every
    ``refresh_seconds`` (so a disabled account is refused by every replica within that time of
    the event, and a request costs no database round trip). Only entries younger than
    ``relevant_seconds`` (the longest token lifetime plus leeway) are read: identity issues no
    token for a disabled account, so older entries can refuse no valid token.
    """

    def __init__(
        self,
        database: Database,
        subscriptions: Subscriptions,
        *,
        refresh_seconds: float = 1.0,
        relevant_seconds: int = 900,
    ) -> None:
        self.accounts = database.collection(DISABLED_ACCOUNTS)
        database.declare_indexes(DISABLED_ACCOUNTS, [IndexModel([("disabled_at", 1)])])
        self.refresh_seconds = refresh_seconds
        self.relevant_seconds = relevant_seconds
        self._snapshot: dict[str, int] = {}
        self._loaded_at = -float("inf")
        self._lock = asyncio.Lock()
        subscriptions.on(ACCOUNT_DISABLED)(self.on_account_disabled)

    async def on_account_disabled(self, event: AccountDisabledV1, delivery: Delivery) -> Outcome:
        disabled_at = int(event.disabled_at.timestamp())
        await self.accounts.update_one(
            {"_id": event.subject},
            {"$max": {"disabled_at": disabled_at}, "$set": {"reason": event.reason}},
            upsert=True,
        )
        self._snapshot[event.subject] = max(disabled_at, self._snapshot.get(event.subject, 0))
        return Outcome.SUCCESS

    async def _disabled(self) -> dict[str, int]:
        if time.monotonic() - self._loaded_at >= self.refresh_seconds:
            async with self._lock:
                if time.monotonic() - self._loaded_at >= self.refresh_seconds:
                    since = int(time.time()) - self.relevant_seconds
                    cursor = self.accounts.find({"disabled_at": {"$gte": since}})
                    self._snapshot = {str(a["_id"]): int(a["disabled_at"]) async for a in cursor}
                    self._loaded_at = time.monotonic()
        return self._snapshot

    async def refuse_disabled(self, claims: dict[str, Any]) -> None:
        disabled_at = (await self._disabled()).get(str(claims.get("sub")))
        if disabled_at is None:
            return
        issued_at = claims.get("iat")
        if not isinstance(issued_at, int) or issued_at <= disabled_at:
            raise Unauthorized("invalid token: the account is disabled")


async def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the verified caller whose account is not disabled, or 401."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required")
    verifier: TokenVerifier = request.app.state.token_verifier
    claims = await verifier.verify_claims(token.strip())
    if verifier.only_for_fhir(claims) and not request.url.path.startswith(FHIR_ROUTES):
        raise Unauthorized("invalid token: audience")
    denylist: Denylist = request.app.state.denylist
    await denylist.refuse_disabled(claims)
    return principal_of(claims)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
