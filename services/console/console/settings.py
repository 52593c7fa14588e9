"""The console's settings (``AKSON_CONSOLE_*``): where the platform's APIs and identity are,
and the console's own public URL (its OAuth redirect URI is ``<public_url>/callback``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AKSON_CONSOLE_", extra="ignore", frozen=True)

    environment: str = "production"
    # the console's own URL as the browser sees it
    public_url: str = "http://127.0.0.1:8000"
    client_id: str = "akson-console"
    # identity as the browser sees it (its issuer: /authorize), and as the console reaches it
    # (/token; empty: the issuer's URL)
    jwt_issuer: str = "http://127.0.0.1:8001"
    identity_url: str = ""
    # SMART's aud on /authorize: the platform's FHIR base
    fhir_base: str = ""
    audit_url: str = "http://127.0.0.1:8002"
    consent_url: str = "http://127.0.0.1:8003"
    session_seconds: int = Field(default=1800, gt=0, le=12 * 3600)
    max_sessions: int = Field(default=10_000, gt=0)
    # Secure cookies (browsers keep them on http://localhost and 127.0.0.1 too)
    cookie_secure: bool = True
    http_timeout_seconds: float = Field(default=20.0, gt=0, le=120)

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url.rstrip('/')}/callback"

    @property
    def token_endpoint(self) -> str:
        return f"{(self.identity_url or self.jwt_issuer).rstrip('/')}/token"


# the scopes the console asks for: SMART v2 user/ scopes over audit's and consent's types (the
# policy still decides every call: a scope only narrows), and a refresh token, which the console
# uses to ask one token per service it calls
SCOPES = (
    "offline_access",
    "user/DecisionLog.rs",
    "user/AuditEvent.rs",
    "user/AccessReview.cru",
    "user/AccessLog.rs",
    "user/Consent.crus",
)
