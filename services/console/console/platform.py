"""The console's way to the platform: identity's authorization-code flow with PKCE, and the
audit and consent APIs called with the logged-in user's own tokens (the console holds no
credential or privilege of its own: it is a public client, and the policy decides every call
as it would for any other client of the user's).

One access token per service (``audience``): the code is redeemed for audit's, and the refresh
token (rotated by identity on each use) brings the others as they are needed, one refresh at a
time per session (a refresh token presented twice revokes the whole family).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from akson_common.auth import unverified_claims
from console.sessions import PendingLogin, Session, User
from console.settings import SCOPES, ConsoleSettings

AUDIT = "audit"
CONSENT = "consent"
EXPIRY_MARGIN_SECONDS = 30
LOGIN_SECONDS = 600


class LoginRequired(Exception):
    """No usable token: the user logs in (again)."""


class LoginFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(Exception):
    """The platform answered 4xx: its status and problem detail (policy denials are 403)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class Unavailable(Exception):
    """The platform could not be reached or answered 5xx."""


class Platform:
    def __init__(self, settings: ConsoleSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self.services = {AUDIT: settings.audit_url, CONSENT: settings.consent_url}

    # -- login ---------------------------------------------------------------------------
    def authorize_url(self, session: Session) -> str:
        verifier = secrets.token_urlsafe(48)  # 64 characters (RFC 7636: 43-128)
        state = secrets.token_urlsafe(24)
        session.pending = PendingLogin(state, verifier, time.time())
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.settings.redirect_uri,
            "scope": " ".join(SCOPES),
            "state": state,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
            "aud": self.settings.fhir_base,
        }
        return f"{self.settings.jwt_issuer.rstrip('/')}/authorize?{urlencode(query)}"

    async def logged_in(self, session: Session, query: Mapping[str, str]) -> User:
        """Back from identity: the code redeemed (PKCE) for audit's token and a refresh token."""
        pending, session.pending = session.pending, None
        if pending is None or time.time() - pending.started_at > LOGIN_SECONDS:
            raise LoginFailed("no login was started from this browser, or it took too long")
        if not secrets.compare_digest(query.get("state", ""), pending.state):
            raise LoginFailed("the answer is not for the login started here")
        if "error" in query:
            raise LoginFailed(query.get("error_description") or query["error"])
        issued = await self._token(
            {
                "grant_type": "authorization_code",
                "code": query.get("code", ""),
                "redirect_uri": self.settings.redirect_uri,
                "client_id": self.settings.client_id,
                "code_verifier": pending.code_verifier,
                "audience": AUDIT,
            }
        )
        claims = unverified_claims(str(issued["access_token"]))
        user = User(
            subject=str(claims.get("sub", "")),
            kind=str(claims.get("akson_kind", "")),
            roles=tuple(str(r) for r in claims.get("roles", ()) or ()),
            hpr_number=claims.get("hpr_number"),
        )
        session.user = user
        self._keep(session, AUDIT, issued)
        return user

    async def _token(self, form: dict[str, str]) -> dict[str, Any]:
        try:
            answer = await self.http.post(self.settings.token_endpoint, data=form)
        except httpx.HTTPError:
            raise Unavailable() from None
        if answer.status_code >= 500:
            raise Unavailable()
        body = _json(answer)
        if answer.status_code != 200 or not isinstance(body.get("access_token"), str):
            raise LoginFailed(str(body.get("error_description") or body.get("error") or ""))
        return body

    def _keep(self, session: Session, audience: str, issued: Mapping[str, Any]) -> None:
        expires_in = float(issued.get("expires_in") or 60)
        session.tokens[audience] = (str(issued["access_token"]), time.time() + expires_in)
        if issued.get("refresh_token"):
            session.refresh_token = str(issued["refresh_token"])

    async def token_for(self, session: Session, audience: str) -> str:
        held = session.tokens.get(audience)
        if held and held[1] - EXPIRY_MARGIN_SECONDS > time.time():
            return held[0]
        async with session.lock:
            held = session.tokens.get(audience)
            if held and held[1] - EXPIRY_MARGIN_SECONDS > time.time():
                return held[0]
            if session.refresh_token is None:
                raise LoginRequired()
            try:
                issued = await self._token(
                    {
                        "grant_type": "refresh_token",
                        "refresh_token": session.refresh_token,
                        "client_id": self.settings.client_id,
                        "audience": audience,
                    }
                )
            except LoginFailed:
                session.refresh_token = None
                session.tokens.clear()
                raise LoginRequired() from None
            self._keep(session, audience, issued)
            return str(issued["access_token"])

    # -- the APIs -----------------------------------------------------------------------------
    async def call(
        self,
        session: Session,
        service: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> Any:
        """The JSON answer of ``method path`` at ``service`` with the user's token for it."""
        answer = await self._send(session, service, method, path, params=params, json=json)
        if answer.status_code == 204 or not answer.content:
            return None
        return answer.json()

    async def _send(
        self,
        session: Session,
        service: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        for attempt in (1, 2):
            token = await self.token_for(session, service)
            try:
                answer = await self.http.request(
                    method,
                    f"{self.services[service].rstrip('/')}{path}",
                    params=dict(params or {}),
                    json=json,
                    headers={"authorization": f"Bearer {token}"},
                )
            except httpx.HTTPError:
                raise Unavailable() from None
            if answer.status_code == 401 and attempt == 1:
                session.tokens.pop(service, None)  # expired or revoked: one fresh token
                continue
            break
        _raise_for(answer)
        return answer

    async def stream(
        self, session: Session, service: str, path: str, params: Mapping[str, str]
    ) -> AsyncIterator[bytes]:
        """A streamed answer (an export), chunk by chunk."""
        token = await self.token_for(session, service)
        request = self.http.build_request(
            "GET",
            f"{self.services[service].rstrip('/')}{path}",
            params=dict(params),
            headers={"authorization": f"Bearer {token}"},
        )
        try:
            answer = await self.http.send(request, stream=True)
        except httpx.HTTPError:
            raise Unavailable() from None
        if answer.status_code != 200:
            await answer.aread()
            await answer.aclose()
            _raise_for(answer)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_bytes():
                    yield chunk
            finally:
                await answer.aclose()

        return chunks()


def _raise_for(answer: httpx.Response) -> None:
    if answer.status_code >= 500:
        raise Unavailable()
    if answer.status_code == 401:
        raise LoginRequired()
    if answer.status_code >= 400:
        body = _json(answer)
        raise Refused(answer.status_code, str(body.get("detail") or body.get("title") or ""))


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
