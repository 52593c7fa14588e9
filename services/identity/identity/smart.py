"""SMART App Launch 2.x: authorization code with PKCE (S256) for registered apps, EHR and
standalone launch with patient and encounter context, ``openid fhirUser`` id tokens, and
refresh tokens that rotate (a reused one revokes its whole family).

The user logs in at the upstream identity provider (HelseID for personnel, ID-porten for
citizens; locally the development login page, ``infra/local/dev_login.py``), which hands back
an upstream id token whose ``nonce`` is the pending request's id; identity verifies it exactly
as it verifies an exchanged upstream token, and takes everything else from its own projections.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, Field

from akson_common.auth import Principal
from akson_common.errors import Forbidden
from identity.models import ClientRegistration, TokenGrant, TokenResponse
from identity.scopes import (
    FHIR_USER,
    LAUNCH,
    LAUNCH_ENCOUNTER,
    LAUNCH_PATIENT,
    OFFLINE_ACCESS,
    OPENID,
    ResourceScope,
    narrow,
)
from identity.service import InvalidClient, OAuthError, TokenService, invalid_grant
from identity.store import (
    AUTHORIZATION_CODES,
    AUTHORIZATION_REQUESTS,
    LAUNCHES,
    PATIENT_PICKS,
    REFRESH_TOKENS,
)

AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
STATE = re.compile(r"^[\x21-\x7e]{1,512}$")
PATIENT = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
PICK = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
PENDING_SECONDS = 600


class LaunchRequest(BaseModel):
    """An EHR launch: the patient (and encounter) the app is launched for."""

    patient: str = Field(pattern=r"^[A-Za-z0-9.-]{1,64}$")
    encounter: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,64}$")


class Redirect(Exception):
    """The answer is a redirect (to the login page, or back to the app)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def with_query(url: str, parameters: Mapping[str, str | None]) -> str:
    query = urlencode({k: v for k, v in parameters.items() if v is not None})
    return f"{url}{'&' if '?' in url else '?'}{query}"


class AppLaunch:
    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens
        self.store = tokens.store
        self.settings = tokens.settings
        self.issuer = tokens.issuer
        self.authorization_endpoint = f"{self.issuer}/authorize"
        self.callback = f"{self.issuer}/authorize/callback"
        self.picker = f"{self.issuer}/authorize/patient"

    # -- GET /authorize ----------------------------------------------------------------------
    async def authorize(self, query: Mapping[str, str]) -> str:
        """Check the request and send the user to log in: the login page's URL. A bad client
        or redirect URI raises :class:`OAuthError` (never redirect to an unchecked URI); any
        other error goes back to the app as ``error=`` on its redirect URI."""
        app = await self._app(query.get("client_id", ""))
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            raise OAuthError("invalid_request", "redirect_uri is not registered for this app")
        state = query.get("state")
        if state is not None and not STATE.match(state):
            raise OAuthError("invalid_request", "state is not printable ASCII (1-512)")

        def back(error: str, description: str) -> Redirect:
            return Redirect(
                with_query(
                    redirect_uri,
                    {"error": error, "error_description": description, "state": state},
                )
            )

        if query.get("response_type") != "code":
            raise back("unsupported_response_type", "only response_type=code")
        if query.get("code_challenge_method") != "S256" or not PKCE_CHALLENGE.match(
            query.get("code_challenge", "")
        ):
            raise back("invalid_request", "PKCE with code_challenge_method=S256 is required")
        if not self.settings.smart_audience or query.get("aud") != self.settings.smart_audience:
            raise back("invalid_request", "aud must be the platform's FHIR base URL")
        if not self.settings.upstream_login_url:
            raise back("temporarily_unavailable", "no upstream login is configured")
        scope = query.get("scope", "")
        if not scope.split() or len(scope) > 4000:
            raise back("invalid_scope", "scope is required")
        request_id = secrets.token_urlsafe(24)
        await self.store.forget_expired_flows(int(time.time()))
        await self.store.keep(
            AUTHORIZATION_REQUESTS,
            request_id,
            {
                "client_id": app.client_id,
                "redirect_uri": redirect_uri,
                "scope": scope,
                "state": state,
                "code_challenge": query["code_challenge"],
                "launch": query.get("launch"),
                "expires_at": int(time.time()) + PENDING_SECONDS,
            },
        )
        return with_query(
            self.settings.upstream_login_url, {"request": request_id, "return_to": self.callback}
        )

    async def _app(self, client_id: str) -> ClientRegistration:
        app = await self.store.clients.get_one_or_none(client_id) if client_id else None
        if app is None or app.status != "active" or not app.redirect_uris:
            raise OAuthError("invalid_request", "client_id names no active registered app")
        return app

    # -- GET /authorize/callback (the upstream login is done) ----------------------------------
    async def logged_in(self, query: Mapping[str, str]) -> str:
        """The app's redirect URI with a code (or an error) for the user the upstream id
        token names."""
        now = int(time.time())
        request_id = query.get("request", "")
        pending = await self.store.take(AUTHORIZATION_REQUESTS, request_id, now)
        if pending is None:
            raise OAuthError("invalid_request", "the authorisation request is unknown or expired")
        redirect_uri, state = pending["redirect_uri"], pending["state"]

        def back(parameters: dict[str, str | None]) -> str:
            return with_query(redirect_uri, {**parameters, "state": state})

        try:
            upstream, claims = await self.tokens.verify_upstream(query.get("id_token", ""))
            if claims.get("nonce") != request_id:
                raise invalid_grant("the login was not for this request")
            identifier = claims.get(upstream.subject_claim)
            if not isinstance(identifier, str) or not identifier:
                raise invalid_grant("the login names no person")
            unit = claims.get(upstream.unit_claim) if upstream.unit_claim else None
            grant = await self.tokens.user(upstream.kind, identifier, unit, "identity")
            app = await self._app(pending["client_id"])
            # an app is for the users of the municipalities that enabled it (none: nobody's)
            if grant.principal.municipality not in app.municipalities:
                raise invalid_grant("the user's municipality has not enabled this app")
            kind = grant.principal.kind
            granted = list(narrow(pending["scope"].split(), app.scopes, kind))
            patient, encounter = await self._context(pending, grant.principal, granted, now)
        except OAuthError as refused:
            return back({"error": "access_denied", "error_description": refused.description})
        record = {
            "client_id": app.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": pending["code_challenge"],
            "user": {"kind": kind, "identifier": identifier, "unit": unit},
            "scopes": granted,
            "patient": patient,
            "encounter": encounter,
        }
        if patient is None and kind == "practitioner" and LAUNCH_PATIENT in granted:
            # a standalone launch: the practitioner picks the patient (the policy still asks
            # for the care relation on every read: the choice alone reaches nothing)
            pick = secrets.token_urlsafe(24)
            await self.store.keep(
                PATIENT_PICKS, pick, {**record, "expires_at": now + PENDING_SECONDS}
            )
            return with_query(self.picker, {"pick": pick})
        return await self._code(record, now)

    async def picked(self, pick: str, patient: str) -> str:
        """The practitioner's choice of patient: on to the app with a code."""
        now = int(time.time())
        record = await self.store.take(PATIENT_PICKS, pick, now)
        if record is None:
            raise OAuthError("invalid_request", "the patient choice is unknown or expired")
        if not PATIENT.match(patient):
            return with_query(
                record["redirect_uri"],
                {"error": "access_denied", "error_description": "no patient was chosen",
                 "state": record["state"]},
            )  # fmt: skip
        return await self._code({**record, "patient": patient}, now)

    async def _code(self, record: dict[str, Any], now: int) -> str:
        """The app's redirect URI with a new code for ``record``'s grant."""
        granted: list[str] = list(record["scopes"])
        if record["patient"] is None:  # no patient context: patient/ scopes reach nothing
            granted = [
                s
                for s in granted
                if s not in (LAUNCH_PATIENT, LAUNCH_ENCOUNTER) and not _in_context(s, "patient")
            ]
        if record["encounter"] is None and LAUNCH_ENCOUNTER in granted:
            granted.remove(LAUNCH_ENCOUNTER)
        code = secrets.token_urlsafe(32)
        await self.store.keep_once(
            AUTHORIZATION_CODES,
            code,
            {
                **{k: v for k, v in record.items() if k != "state"},
                # the refresh tokens of this grant: revoked if the code is presented twice
                "family": uuid.uuid4().hex,
                "scopes": granted,
                "expires_at": now + self.settings.authorization_code_seconds,
            },
        )
        return with_query(record["redirect_uri"], {"code": code, "state": record["state"]})

    async def _context(
        self, pending: Mapping[str, Any], user: Principal, granted: list[str], now: int
    ) -> tuple[str | None, str | None]:
        """The launch patient and encounter: an EHR launch's (made for this same user), else
        for a standalone ``launch/patient`` a citizen's own record (a practitioner's is picked
        next: :meth:`picked`)."""
        if pending.get("launch"):
            if LAUNCH not in granted:
                raise invalid_grant("an EHR launch needs the launch scope, granted to the app")
            launch = await self.store.take(LAUNCHES, str(pending["launch"]), now)
            if launch is None or launch["subject"] != user.id:
                raise invalid_grant("the launch is unknown, expired or not this user's")
            return launch["patient"], launch.get("encounter")
        if LAUNCH_PATIENT in granted and user.kind == "citizen":
            return user.id, None
        return None, None

    # -- POST /launch (an EHR starts an app for a patient) -----------------------------------
    async def launch(self, user: Principal, request: LaunchRequest) -> str:
        if user.kind != "practitioner":
            raise Forbidden("an EHR launch is made by a practitioner")
        launch_id = secrets.token_urlsafe(24)
        await self.store.keep(
            LAUNCHES,
            launch_id,
            {
                "subject": user.id,
                "patient": request.patient,
                "encounter": request.encounter,
                "expires_at": int(time.time()) + self.settings.launch_seconds,
            },
        )
        return launch_id

    # -- POST /token: authorization_code and refresh_token ------------------------------------
    async def token(self, form: Mapping[str, str]) -> TokenResponse:
        client_id = await self._client(form)
        audience = self._audience(form)  # before the code or refresh token is used up
        now = int(time.time())
        if form.get("grant_type") == AUTHORIZATION_CODE:
            record = await self.store.use_once(AUTHORIZATION_CODES, form.get("code", ""), now)
            if record is None:
                raise invalid_grant("the code is unknown, used or expired")
            if record["client_id"] != client_id:
                raise invalid_grant("the code was issued to another client")
            if record["redirect_uri"] != form.get("redirect_uri"):
                raise invalid_grant("redirect_uri differs from the authorisation request's")
            verifier = form.get("code_verifier", "")
            if not PKCE_VERIFIER.match(verifier) or not secrets.compare_digest(
                s256(verifier), record["code_challenge"]
            ):
                raise invalid_grant("the code_verifier does not match the code_challenge")
        else:
            record = await self.store.use_once(REFRESH_TOKENS, form.get("refresh_token", ""), now)
            if record is None or record["client_id"] != client_id:
                raise invalid_grant("the refresh token is unknown, used, revoked or expired")
            narrower = form.get("scope")
            if narrower is not None:
                if not set(narrower.split()) <= set(record["scopes"]):
                    raise OAuthError("invalid_scope", "a refresh may only narrow the scopes")
                record["scopes"] = narrower.split()
        await self._app(client_id)  # a disabled app gets no token, nor a refreshed one
        return await self._issue(client_id, record, str(record["family"]), now, audience)

    def _audience(self, form: Mapping[str, str]) -> str:
        """The access token's audience: the FHIR base unless the request names one platform
        service (``audience``, as in token exchange): a web app over the platform's own APIs
        (the console) asks a token for each service it calls, on each refresh."""
        audience = form.get("audience")
        if audience is None:
            return self.settings.fhir_gateway_audience
        if audience not in self.settings.audiences:
            raise OAuthError("invalid_target", "audience must name one platform service")
        return audience

    async def _client(self, form: Mapping[str, str]) -> str:
        """The authenticated client: a confidential one by its client assertion, a public one
        by its client_id alone (its code is bound by PKCE)."""
        if form.get("client_assertion") is not None:
            return await self.tokens.authenticate_client(
                form.get("client_assertion", ""), form.get("client_id")
            )
        client_id = form.get("client_id", "")
        app = await self.store.clients.get_one_or_none(client_id) if client_id else None
        if app is None or app.kind != "public":
            raise InvalidClient("a confidential client authenticates with private_key_jwt")
        return client_id

    async def _issue(
        self, client_id: str, record: dict[str, Any], family: str, now: int, audience: str
    ) -> TokenResponse:
        user = record["user"]
        # the user's facts as master data holds them now (a suspension ends a refresh too)
        grant = await self.tokens.user(user["kind"], user["identifier"], user["unit"], audience)
        scopes = tuple(record["scopes"])
        principal = grant.principal.model_copy(
            update={
                "scopes": scopes,
                "app": client_id,
                "launch_patient": record.get("patient"),
                "launch_encounter": record.get("encounter"),
            }
        )
        access = TokenGrant(principal=principal, audience=grant.audience)
        refresh_token = None
        if OFFLINE_ACCESS in scopes:
            refresh_token = secrets.token_urlsafe(32)
            await self.store.keep_once(
                REFRESH_TOKENS,
                refresh_token,
                {
                    "family": family,
                    "client_id": client_id,
                    "user": user,
                    "scopes": list(scopes),
                    "patient": record.get("patient"),
                    "encounter": record.get("encounter"),
                    "expires_at": now + self.settings.refresh_token_lifetime_seconds,
                },
            )
        id_token = None
        if OPENID in scopes and FHIR_USER in scopes:
            id_token = await self._id_token(principal, client_id, now)
        return TokenResponse(
            access_token=await self.tokens.sign(access),
            expires_in=self.settings.token_lifetime_seconds,
            scope=" ".join(scopes),
            patient=record.get("patient"),
            encounter=record.get("encounter"),
            id_token=id_token,
            refresh_token=refresh_token,
        )

    async def _id_token(self, principal: Principal, client_id: str, now: int) -> str:
        if principal.kind == "practitioner":
            fhir_user = f"Practitioner/{principal.hpr_number}"
        else:
            fhir_user = f"Patient/{principal.id}"
        return await self.tokens.keys.sign(
            {
                "iss": self.issuer,
                "sub": principal.id,
                "aud": client_id,
                "iat": now,
                "exp": now + self.settings.token_lifetime_seconds,
                "fhirUser": f"{self.settings.smart_audience}/{fhir_user}",
            }
        )


def _in_context(scope: str, context: str) -> bool:
    parsed = ResourceScope.parse(scope)
    return parsed is not None and parsed.context == context
