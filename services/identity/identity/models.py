"""The identity service's settings, registrations and read models."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from joserfc.jwk import OctKey
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from akson_common.auth import Principal
from akson_common.settings import ServiceSettings
from identity.keys import key_encryption_key

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TOKEN_TYPES = frozenset(
    {
        "urn:ietf:params:oauth:token-type:jwt",
        "urn:ietf:params:oauth:token-type:id_token",
        ACCESS_TOKEN_TYPE,
    }
)


class UpstreamIssuer(BaseModel):
    """An identity provider whose tokens we exchange (HelseID for personnel, ID-porten for
    citizens); ``subject_claim`` names the claim carrying the HPR number or national id."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    kind: Literal["practitioner", "citizen"]
    audience: str
    jwks_url: str = ""
    jwks_file: str = ""
    subject_claim: str
    unit_claim: str = ""

    @model_validator(mode="after")
    def _has_keys(self) -> UpstreamIssuer:
        if not (self.jwks_url or self.jwks_file):
            raise ValueError(f"upstream issuer {self.issuer}: jwks_url or jwks_file is required")
        return self


class IdentitySettings(ServiceSettings):
    upstream_issuers: tuple[UpstreamIssuer, ...] = ()
    clients_file: str = ""
    audiences: tuple[str, ...] = ()
    token_lifetime_seconds: int = Field(default=300, gt=0, le=300)
    max_assertion_lifetime_seconds: int = Field(default=60, gt=0, le=60)
    # a new key is in the JWKS this long before it signs: above every service's JWKS max age
    key_publish_lead_seconds: float = Field(default=600.0, ge=0)
    # the key-encryption key of the stored signing keys (base64url of 32 random bytes): a
    # mounted secret file, or the value itself; required outside development
    key_encryption_key_file: str = ""
    key_encryption_key: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _a_key_encryption_key_outside_development(self) -> IdentitySettings:
        if self.environment != "development" and not (
            self.key_encryption_key_file or self.key_encryption_key.get_secret_value()
        ):
            raise ValueError("key_encryption_key_file must be set outside development")
        return self

    def kek(self) -> OctKey | None:
        """The key-encryption key, read from its file at each start (a rotated secret counts)."""
        if self.key_encryption_key_file:
            return key_encryption_key(Path(self.key_encryption_key_file).read_text())
        value = self.key_encryption_key.get_secret_value()
        return key_encryption_key(value) if value else None


class ClientRegistration(BaseModel):
    """A system client (lab, other EHR, admin system): its public keys and what it may ask for."""

    client_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,100}$")
    jwks: dict[str, Any]
    scopes: tuple[str, ...] = ()
    # the organisation the client acts for (NAV, child welfare, a lab) and its roles
    # (e.g. auditor): both are facts of the registration, never of the request
    organisation: str | None = None
    roles: tuple[str, ...] = ()


class PractitionerFacts(BaseModel):
    """What master data's events say about a practitioner: enough to issue a token."""

    hpr_number: str
    status: Literal["active", "suspended", "revoked"]
    professions: tuple[str, ...] = ()
    units: tuple[str, ...] = ()


class PersonFacts(BaseModel):
    national_id: str
    municipality: str
    deceased: bool = False


class OrganisationFacts(BaseModel):
    org_number: str
    parent: str | None = None
    municipality: str


class TokenGrant(BaseModel):
    """Who a token is for (the principal every service will see) and for which service."""

    principal: Principal
    audience: str
    client_id: str | None = None


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    scope: str | None = None
    issued_token_type: str | None = None
