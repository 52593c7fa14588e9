"""The identity service's settings, registrations and read models."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from joserfc.jwk import KeySet
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from akson_common.auth import Principal
from identity.scopes import invalid_scopes

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


AppKind = Literal["public", "confidential"]
AppStatus = Literal["active", "disabled"]
CLIENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,100}$"
MUNICIPALITY_PATTERN = r"^[0-9]{4}$"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _https_or_local(url: str, what: str) -> str:
    """An absolute https URL (http only on the loopback host), without a fragment."""
    parts = urlsplit(url)
    local = parts.scheme == "http" and (parts.hostname or "") in LOCAL_HOSTS
    if not (parts.scheme == "https" or local) or not parts.netloc or parts.fragment:
        raise ValueError(f"{what} must be an absolute https URL (http only for localhost)")
    return url


class ClientRegistration(BaseModel):
    """A registered app or system client (the app registry): who it is, how it authenticates
    (``public``: PKCE only; ``confidential``: ``private_key_jwt`` against its JWKS, inline or
    at ``jwks_uri``), where it may be redirected, and what it may ask for.

    ``municipalities``: those that enabled the app; only their users may authorise it.
    ``organisation`` and ``roles`` (e.g. auditor, admin) are facts of the registration, never
    of a request; only the boot-time seed of the platform's own clients sets them."""

    client_id: str = Field(pattern=CLIENT_ID_PATTERN)
    name: str = Field(default="", max_length=200)
    kind: AppKind = "confidential"
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = Field(default=None, max_length=2000)
    redirect_uris: tuple[Annotated[str, Field(max_length=2000)], ...] = Field(
        default=(), max_length=20
    )
    scopes: tuple[Annotated[str, Field(max_length=200)], ...] = Field(default=(), max_length=200)
    launch_url: str | None = Field(default=None, max_length=2000)
    municipalities: tuple[Annotated[str, Field(pattern=MUNICIPALITY_PATTERN)], ...] = Field(
        default=(), max_length=400
    )
    status: AppStatus = "active"
    organisation: str | None = None
    roles: tuple[str, ...] = ()

    @field_validator("redirect_uris")
    @classmethod
    def _redirects_are_absolute(cls, uris: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_https_or_local(uri, "a redirect URI") for uri in uris)

    @field_validator("jwks_uri", "launch_url")
    @classmethod
    def _urls_are_absolute(cls, url: str | None) -> str | None:
        return None if url is None else _https_or_local(url, "a URL")

    @model_validator(mode="after")
    def _authenticates(self) -> ClientRegistration:
        if self.kind == "confidential" and not (self.jwks or self.jwks_uri):
            raise ValueError("a confidential client needs jwks or jwks_uri")
        if self.kind == "public" and (self.jwks or self.jwks_uri):
            raise ValueError("a public client has no keys (it uses PKCE only)")
        if self.jwks is not None:
            keys = self.jwks.get("keys")
            if not isinstance(keys, list) or any(not isinstance(k, dict) or "d" in k for k in keys):
                raise ValueError("jwks must be a JWK Set of public keys ({'keys': [...]})")
            try:
                KeySet.import_key_set(self.jwks)  # type: ignore[arg-type]
            except Exception:  # joserfc raises several kinds on a bad key
                raise ValueError("jwks holds a key that is not a valid JWK") from None
        return self


class AppWrite(BaseModel):
    """What the admin API takes to register or change an app: SMART v2 scopes only, and no
    organisation or roles (those are the platform's own clients', seeded at boot)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: AppKind
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = Field(default=None, max_length=2000)
    redirect_uris: tuple[Annotated[str, Field(max_length=2000)], ...] = Field(
        default=(), max_length=20
    )
    scopes: tuple[Annotated[str, Field(max_length=200)], ...] = Field(min_length=1, max_length=200)
    launch_url: str | None = Field(default=None, max_length=2000)
    municipalities: tuple[Annotated[str, Field(pattern=MUNICIPALITY_PATTERN)], ...] = Field(
        default=(), max_length=400
    )

    @field_validator("scopes")
    @classmethod
    def _smart_scopes(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        unknown = invalid_scopes(scopes)
        if unknown:
            raise ValueError(f"not SMART v2 scopes: {', '.join(unknown[:5])}")
        return scopes

    @model_validator(mode="after")
    def _a_valid_registration(self) -> AppWrite:
        try:
            self.registration("validating")
        except ValidationError as invalid:
            raise ValueError("; ".join(str(e["msg"]) for e in invalid.errors())) from None
        return self

    def registration(self, client_id: str, status: AppStatus = "active") -> ClientRegistration:
        return ClientRegistration.model_validate(
            {**self.model_dump(), "client_id": client_id, "status": status}
        )


class AppCreate(AppWrite):
    client_id: str = Field(pattern=CLIENT_ID_PATTERN)


class AppPublic(BaseModel):
    """A registered app as the admin API shows it."""

    client_id: str
    name: str
    kind: AppKind
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    launch_url: str | None = None
    municipalities: tuple[str, ...]
    status: AppStatus
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


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    scope: str | None = None
    issued_token_type: str | None = None
    # SMART App Launch: the launch context, the OpenID Connect id token, the refresh token
    patient: str | None = None
    encounter: str | None = None
    id_token: str | None = None
    refresh_token: str | None = None
