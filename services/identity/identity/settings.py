"""Identity's own settings (AKSON_IDENTITY_*), next to the ones every service has."""

from __future__ import annotations

from pathlib import Path

from joserfc.jwk import OctKey
from pydantic import Field, SecretStr, model_validator

from akson_common.settings import Secret, ServiceSettings
from identity.keys import key_encryption_key
from identity.models import UpstreamIssuer


class IdentitySettings(ServiceSettings):
    upstream_issuers: tuple[UpstreamIssuer, ...] = ()
    clients_file: str = ""
    audiences: tuple[str, ...] = ()
    token_lifetime_seconds: int = Field(default=300, gt=0, le=300)
    # SMART Backend Services: a client assertion expires within five minutes
    max_assertion_lifetime_seconds: int = Field(default=300, gt=0, le=300)
    # a new key is in the JWKS this long before it signs: above every service's JWKS max age
    key_publish_lead_seconds: float = Field(default=600.0, ge=0)
    # the key-encryption key of the stored signing keys (base64url of 32 random bytes): a
    # mounted secret file, or the value itself; required outside development
    key_encryption_key_file: str = ""
    key_encryption_key: Secret = SecretStr("")
    # SMART App Launch: the FHIR base URL apps name as ``aud`` (the gateway's /fhir/R4), the
    # upstream login page /authorize sends the user to (locally the development login page)
    smart_audience: str = ""
    upstream_login_url: str = ""
    authorization_code_seconds: int = Field(default=60, gt=0, le=600)
    launch_seconds: int = Field(default=300, gt=0, le=3600)
    refresh_token_lifetime_seconds: int = Field(default=8 * 3600, gt=0, le=30 * 24 * 3600)
    # roles identity grants to named health personnel (HPR number -> roles, e.g. "auditor":
    # the municipality's log-control officer); the register of such duties is identity's, not
    # master data's (HPR says who is authorised as health personnel, not who audits)
    personnel_roles: dict[str, tuple[str, ...]] = {}

    @model_validator(mode="after")
    def _a_key_encryption_key_outside_development(self) -> IdentitySettings:
        if self.environment != "development" and not (
            self.key_encryption_key_file or self.key_encryption_key.get_secret_value()
        ):
            raise ValueError("key_encryption_key_file must be set outside development")
        if self.environment != "development" and self.upstream_login_url:
            # the development login page hands back upstream id tokens by redirect
            raise ValueError("upstream_login_url is the development login page's only")
        return self

    def kek(self) -> OctKey | None:
        """The key-encryption key, read from its file at each start (a rotated secret counts)."""
        if self.key_encryption_key_file:
            return key_encryption_key(Path(self.key_encryption_key_file).read_text())
        value = self.key_encryption_key.get_secret_value()
        return key_encryption_key(value) if value else None
