"""The token service: token exchange (RFC 8693) for personnel and citizens, client credentials
with ``private_key_jwt`` (RFC 7523) for systems, and the claims master data vouches for.

Nothing in an issued token is taken from the caller on trust: the subject comes from a verified
upstream token or client assertion, everything else from identity's own projections of master
data. Errors are OAuth's own (RFC 6749 §5.2), raised as :class:`OAuthError`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from cachetools import TTLCache
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from akson_common.auth import (
    CLIENT_ASSERTION_ALGORITHMS,
    JwksSource,
    Principal,
    TokenVerifier,
    token_header,
    unverified_claims,
)
from akson_common.errors import ServiceUnavailable, Unauthorized
from akson_common.events import (
    Delivery,
    OrganisationChangedV1,
    Outcome,
    PersonChangedV1,
    PractitionerChangedV1,
)
from identity.keys import SigningKeys
from identity.models import (
    ACCESS_TOKEN_TYPE,
    CLIENT_CREDENTIALS,
    JWT_BEARER_ASSERTION,
    SUBJECT_TOKEN_TYPES,
    TOKEN_EXCHANGE,
    ClientRegistration,
    TokenGrant,
    TokenResponse,
    UpstreamIssuer,
)
from identity.scopes import ResourceScope, narrow
from identity.settings import IdentitySettings
from identity.store import IdentityStore, practitioner_subject

ASSERTION_ALGORITHMS = list(CLIENT_ASSERTION_ALGORITHMS)


class OAuthError(Exception):
    """An error of the token endpoint, answered as RFC 6749 JSON (not problem+json)."""

    status: ClassVar[int] = 400

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


class InvalidClient(OAuthError):
    status = 401

    def __init__(self, description: str) -> None:
        super().__init__("invalid_client", description)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


class TokenService:
    def __init__(
        self, settings: IdentitySettings, store: IdentityStore, keys: SigningKeys, http: Any
    ) -> None:
        self.settings = settings
        self.store = store
        self.keys = keys
        self.issuer = settings.jwt_issuer
        self.token_endpoint = f"{self.issuer}/token"
        self.http = http
        self._client_jwks: TTLCache[str, JwksSource] = TTLCache(maxsize=1000, ttl=3600)
        self.upstream = {
            u.issuer: (
                u,
                TokenVerifier(
                    JwksSource(url=u.jwks_url, file=u.jwks_file, client=http),
                    issuer=u.issuer,
                    audience=u.audience,
                    algorithms=tuple(ASSERTION_ALGORITHMS),
                    leeway_seconds=settings.jwt_leeway_seconds,
                ),
            )
            for u in settings.upstream_issuers
        }

    # -- the token endpoint ------------------------------------------------------------------
    async def token(self, form: Mapping[str, str]) -> TokenResponse:
        grant_type = form.get("grant_type", "")
        if grant_type == TOKEN_EXCHANGE:
            grant = await self._exchange(form)
            issued_type: str | None = ACCESS_TOKEN_TYPE
        elif grant_type == CLIENT_CREDENTIALS:
            grant = await self._client_credentials(form)
            issued_type = None
        else:
            raise OAuthError("unsupported_grant_type", "use token exchange or client credentials")
        return TokenResponse(
            access_token=await self.sign(grant),
            expires_in=self.settings.token_lifetime_seconds,
            scope=" ".join(grant.principal.scopes) or None,
            issued_token_type=issued_type,
        )

    def _audience(self, form: Mapping[str, str]) -> str:
        audience = form.get("audience", "")
        if audience not in self.settings.audiences:
            raise OAuthError("invalid_target", "audience must name one platform service")
        return audience

    async def sign(self, grant: TokenGrant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            **grant.principal.to_claims(),
            "iss": self.issuer,
            "aud": grant.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.settings.token_lifetime_seconds,
            "jti": uuid.uuid4().hex,
        }
        return await self.keys.sign(claims)

    # -- token exchange (personnel, citizens) ------------------------------------------------
    async def _exchange(self, form: Mapping[str, str]) -> TokenGrant:
        subject_token = form.get("subject_token", "")
        if not subject_token or form.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
            raise OAuthError("invalid_request", "subject_token and its type are required")
        requested = form.get("requested_token_type")
        if requested not in (None, ACCESS_TOKEN_TYPE):
            raise OAuthError("invalid_request", "only access tokens are issued")
        audience = self._audience(form)
        upstream, claims = await self.verify_upstream(subject_token)
        identifier = claims.get(upstream.subject_claim)
        if not isinstance(identifier, str) or not identifier:
            raise invalid_grant("the subject token names no person")
        unit = claims.get(upstream.unit_claim) if upstream.unit_claim else None
        return await self.user(upstream.kind, identifier, unit, audience)

    async def user(self, kind: str, identifier: str, unit: object, audience: str) -> TokenGrant:
        """The grant for a person an upstream token named, from identity's projections."""
        if kind == "practitioner":
            return await self._practitioner(identifier, unit, audience)
        return await self._citizen(identifier, audience)

    async def verify_upstream(self, token: str) -> tuple[UpstreamIssuer, dict[str, Any]]:
        try:
            unverified = unverified_claims(token)
        except ValueError:
            raise invalid_grant("the subject token is not a JWT") from None
        trusted = self.upstream.get(str(unverified.get("iss", "")))
        if trusted is None:
            raise invalid_grant("the subject token is not from a trusted issuer")
        upstream, verifier = trusted
        try:
            return upstream, await verifier.verify_claims(token)
        except Unauthorized as refused:
            raise invalid_grant(f"the subject token is not valid: {refused.detail}") from None

    async def _practitioner(self, hpr_number: str, unit: object, audience: str) -> TokenGrant:
        facts = await self.store.practitioners.get_one_or_none(hpr_number)
        if facts is None:
            raise invalid_grant("the practitioner is not in the health personnel register")
        if facts.status != "active":
            raise invalid_grant("the practitioner's authorisation is not active")
        if not facts.professions:
            raise invalid_grant("the practitioner holds no valid authorisation")
        chosen = unit if isinstance(unit, str) and unit in facts.units else None
        if chosen is None and len(facts.units) == 1:
            chosen = facts.units[0]
        organisation = municipality = None
        if chosen is not None:
            facts_of_unit = await self.store.organisations.get_one_or_none(chosen)
            if facts_of_unit is not None:
                organisation = facts_of_unit.parent or facts_of_unit.org_number
                municipality = facts_of_unit.municipality
        principal = Principal(
            id=practitioner_subject(hpr_number),
            kind="practitioner",
            hpr_number=hpr_number,
            profession=facts.professions[0],
            unit=chosen,
            organisation=organisation,
            municipality=municipality,
            roles=self.settings.personnel_roles.get(hpr_number, ()),
        )
        return TokenGrant(principal=principal, audience=audience)

    async def _citizen(self, national_id: str, audience: str) -> TokenGrant:
        person = await self.store.persons.get_one_or_none(national_id)
        if person is not None and person.deceased:
            raise invalid_grant("the person is registered as deceased")
        principal = Principal(
            id=national_id,
            kind="citizen",
            municipality=person.municipality if person is not None else None,
        )
        return TokenGrant(principal=principal, audience=audience)

    # -- client credentials (systems) --------------------------------------------------------
    async def _client_credentials(self, form: Mapping[str, str]) -> TokenGrant:
        if form.get("client_assertion_type") != JWT_BEARER_ASSERTION:
            raise InvalidClient("client authentication is private_key_jwt (RFC 7523)")
        assertion = form.get("client_assertion", "")
        client_id = await self.authenticate_client(assertion, form.get("client_id"))
        registration = await self.store.clients.get_one_or_none(client_id)
        assert registration is not None  # authenticated against it
        requested = tuple(form.get("scope", "").split())
        smart = any(ResourceScope.parse(s) for s in requested)
        if smart and "audience" not in form:
            # SMART Backend Services name no audience: the token is for the FHIR base
            audience = self.settings.fhir_gateway_audience
        else:
            audience = self._audience(form)
        if smart:
            # SMART Backend Services: system/ scopes, narrowed to what the client may have
            requested = narrow(requested, registration.scopes, "system")
            if not requested:
                raise OAuthError("invalid_scope", "no requested scope is granted to this client")
        elif not set(requested) <= set(registration.scopes):
            raise OAuthError("invalid_scope", "a requested scope is not granted to this client")
        principal = Principal(
            id=client_id,
            kind="system",
            organisation=registration.organisation,
            roles=registration.roles,
            scopes=requested,
            app=client_id,
        )
        return TokenGrant(principal=principal, audience=audience)

    async def authenticate_client(self, assertion: str, claimed_id: str | None) -> str:
        try:
            unverified = unverified_claims(assertion)
        except ValueError:
            raise InvalidClient("the client assertion is malformed") from None
        client_id = str(unverified.get("iss", ""))
        if claimed_id is not None and claimed_id != client_id:
            raise InvalidClient("client_id does not match the assertion")
        registration = await self.store.clients.get_one_or_none(client_id)
        if registration is None:
            raise InvalidClient("unknown client")
        now = int(time.time())
        registry = jwt.JWTClaimsRegistry(
            leeway=self.settings.jwt_leeway_seconds,
            iss={"essential": True, "value": client_id},
            sub={"essential": True, "value": client_id},
            # SMART Backend Services: the token endpoint's URL (the issuer for older clients)
            aud={"essential": True, "values": [self.token_endpoint, self.issuer]},
            exp={"essential": True},
            jti={"essential": True},
        )
        if registration.status != "active":
            raise InvalidClient("the client is disabled")
        try:
            keys = await self._client_keys(registration, token_header(assertion).get("kid"))
            claims = jwt.decode(assertion, keys, algorithms=ASSERTION_ALGORITHMS).claims
            registry.validate(claims)
        except (JoseError, ValueError, KeyError, TypeError):
            raise InvalidClient("the client assertion is not valid") from None
        expires_at = claims["exp"]
        if (
            not isinstance(expires_at, int)
            or expires_at > now + self.settings.max_assertion_lifetime_seconds
        ):
            raise InvalidClient("the client assertion expires too far ahead")
        await self.store.forget_expired_assertions(now - self.settings.jwt_leeway_seconds)
        if not await self.store.use_assertion_once(client_id, str(claims["jti"]), expires_at):
            raise InvalidClient("the client assertion was used before")
        return client_id

    async def _client_keys(self, registration: ClientRegistration, kid: object) -> KeySet:
        """The client's public keys: inline, or fetched from its ``jwks_uri`` (cached, refetched
        on an unknown kid at most every 10 s, as for the platform's own JWKS)."""
        if registration.jwks is not None:
            return KeySet.import_key_set(registration.jwks)  # type: ignore[arg-type]
        if registration.jwks_uri is None:
            raise ValueError("the client has no keys")
        source = self._client_jwks.get(registration.jwks_uri)
        if source is None:
            source = JwksSource(url=registration.jwks_uri, client=self.http)
            self._client_jwks[registration.jwks_uri] = source
        try:
            return await source.keys(kid if isinstance(kid, str) else None)
        except ServiceUnavailable:
            raise InvalidClient("the client's jwks_uri could not be read") from None

    # -- master data projections -------------------------------------------------------------
    async def on_practitioner_changed(
        self, event: PractitionerChangedV1, delivery: Delivery
    ) -> Outcome:
        await self.store.save_practitioner(event)
        return Outcome.SUCCESS

    async def on_person_changed(self, event: PersonChangedV1, delivery: Delivery) -> Outcome:
        await self.store.save_person(event)
        return Outcome.SUCCESS

    async def on_persons_changed(
        self, events: Sequence[tuple[PersonChangedV1, Delivery]]
    ) -> list[Outcome]:
        await self.store.save_persons([event for event, _ in events])
        return [Outcome.SUCCESS] * len(events)

    async def on_organisation_changed(
        self, event: OrganisationChangedV1, delivery: Delivery
    ) -> Outcome:
        await self.store.save_organisation(event)
        return Outcome.SUCCESS
