"""The console's sessions: server-side, in memory, behind an opaque cookie.

The cookie holds only a random session id (256 bits): Secure, HttpOnly, SameSite=Lax (the
OAuth callback is a top-level navigation back from identity, which Strict would strip of it),
``__Host-`` prefixed (no Domain, Path=/). The tokens stay on the server and never reach the
browser or a log line. A new id is issued at login (no session fixation) and on logout the
session is dropped.

In memory: one console replica (or sticky sessions) per deployment; a restart logs everyone out,
which for a console over short-lived tokens is the safe failure.

CSRF: each session has a random token; every form carries it (``csrf``) and htmx sends it as
``X-CSRF-Token`` (``hx-headers`` on the body); a state-changing request without the session's
token is refused. SameSite=Lax already keeps the cookie off cross-site POSTs; the token is the
defence that does not depend on the browser.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

from cachetools import TTLCache

COOKIE = "__Host-akson-console"
INSECURE_COOKIE = "akson-console"  # development over plain http to a non-loopback host only
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

UserKind = Literal["practitioner", "citizen", "system"]


@dataclass(frozen=True)
class User:
    """Who logged in, from the access token identity issued (the APIs verify it; the console
    only chooses which pages to offer)."""

    subject: str
    kind: str
    roles: tuple[str, ...] = ()
    hpr_number: str | None = None

    @property
    def auditor(self) -> bool:
        return "auditor" in self.roles

    @property
    def citizen(self) -> bool:
        return self.kind == "citizen"


@dataclass
class PendingLogin:
    state: str
    code_verifier: str
    started_at: float


@dataclass
class Session:
    id: str
    csrf: str
    lang: str | None = None
    pending: PendingLogin | None = None
    user: User | None = None
    refresh_token: str | None = None
    # audience -> (access token, expiry as a Unix time)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    flash: str | None = None
    # one token refresh at a time: a refresh token presented twice revokes its whole family
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class CsrfRefused(Exception):
    """A state-changing request without this session's CSRF token."""


def csrf_holds(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and secrets.compare_digest(session.csrf, str(submitted))


def require_csrf(session: Session, submitted: str | None) -> None:
    if not csrf_holds(session, submitted):
        raise CsrfRefused()


class SessionStore:
    def __init__(self, *, ttl_seconds: int, max_sessions: int) -> None:
        self._sessions: TTLCache[str, Session] = TTLCache(maxsize=max_sessions, ttl=ttl_seconds)

    def new(self) -> Session:
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32))
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is not None:
            self._sessions[session_id] = session  # sliding expiry
        return session

    def rotate(self, session: Session) -> Session:
        """The same session under a new id and a new CSRF token (after a login)."""
        self._sessions.pop(session.id, None)
        session.id = secrets.token_urlsafe(32)
        session.csrf = secrets.token_urlsafe(32)
        self._sessions[session.id] = session
        return session

    def drop(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def __len__(self) -> int:
        return len(self._sessions)


def cookie_name(secure: bool) -> str:
    return COOKIE if secure else INSECURE_COOKIE


def now() -> float:
    return time.time()
