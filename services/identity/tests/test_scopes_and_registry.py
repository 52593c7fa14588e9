"""SMART v2 scope narrowing and the app registry's validation (no servers)."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc.jwk import RSAKey
from pydantic import ValidationError

from identity.models import AppCreate, ClientRegistration
from identity.scopes import invalid_scopes, narrow
from identity.smart import PKCE_VERIFIER, s256, with_query

ALLOWED = ("patient/DocumentReference.rs", "user/Observation.r", "launch/patient", "openid")


@pytest.mark.parametrize(
    ("requested", "kind", "granted"),
    [
        (["patient/DocumentReference.rs"], "citizen", ("patient/DocumentReference.rs",)),
        # a wildcard request is met with what the app may have
        (["patient/*.cruds"], "practitioner", ("patient/DocumentReference.rs",)),
        # more permissions than allowed: the common ones only
        (["patient/DocumentReference.cruds"], "citizen", ("patient/DocumentReference.rs",)),
        (["user/Observation.rs"], "practitioner", ("user/Observation.r",)),
        # nothing the app may not have, nothing of another type
        (["patient/Flag.r", "user/DocumentReference.r"], "practitioner", ()),
        # other scopes only when both ask for and allow them
        (["launch/patient", "openid", "offline_access"], "citizen", ("launch/patient", "openid")),
        # a person never gets system/ scopes, nor a system patient/ or user/ ones
        (["system/DocumentReference.rs"], "practitioner", ()),
        (["patient/DocumentReference.rs"], "system", ()),
        (["not-a-scope", "patient/document.rs"], "citizen", ()),
    ],
)
def test_granted_scopes_are_the_intersection(
    requested: list[str], kind: Any, granted: tuple[str, ...]
) -> None:
    assert narrow(requested, ALLOWED, kind) == granted


def test_system_scopes_narrow_for_backend_services() -> None:
    allowed = ("system/*.rs",)
    assert narrow(["system/Observation.rs"], allowed, "system") == ("system/Observation.rs",)
    assert narrow(["system/Observation.c"], allowed, "system") == ()


def test_only_smart_v2_scopes_are_valid() -> None:
    assert invalid_scopes(["patient/*.rs", "user/Observation.cruds", "launch", "fhirUser"]) == []
    bad = ["patient/DocumentReference.read", "patient/*.sr", "admin", "user/x.r", "patient/*."]
    assert invalid_scopes(bad) == bad


def app(**changes: Any) -> dict[str, Any]:
    return {
        "client_id": "demo-app",
        "name": "Demo",
        "kind": "public",
        "redirect_uris": ["https://app.example/callback"],
        "scopes": ["patient/DocumentReference.rs", "launch/patient"],
        **changes,
    }


def test_a_valid_app_registers() -> None:
    registration = AppCreate.model_validate(app()).registration("demo-app")
    assert registration.status == "active" and registration.kind == "public"


@pytest.mark.parametrize(
    "changes",
    [
        {"redirect_uris": ["http://app.example/callback"]},  # http off the loopback host
        {"redirect_uris": ["/callback"]},  # not absolute
        {"redirect_uris": ["https://app.example/cb#fragment"]},
        {"scopes": ["DocumentReference.read"]},  # the platform's own grammar, not SMART's
        {"scopes": []},
        {"kind": "confidential"},  # without keys
        {"jwks": {"keys": []}},  # a public app has no keys
        {"roles": ["admin"]},  # roles are the seed's, never the admin API's
        {"municipalities": ["46"]},
        {"client_id": "no spaces"},
        {"jwks_uri": "ftp://keys.example/jwks", "kind": "confidential"},
    ],
)
def test_bad_registrations_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AppCreate.model_validate(app(**changes)).registration("demo-app")


def test_loopback_http_redirects_are_allowed() -> None:
    registration = AppCreate.model_validate(
        app(redirect_uris=["http://127.0.0.1:8765/callback", "http://localhost/cb"])
    )
    assert len(registration.redirect_uris) == 2


def test_the_seed_of_the_platform_clients_still_validates() -> None:
    jwks = {"keys": [RSAKey.generate_key(2048).as_dict(private=False)]}
    seeded = ClientRegistration.model_validate(
        {"client_id": "akson-dev-lab", "jwks": jwks, "scopes": ["Observation.write"]}
    )
    assert seeded.kind == "confidential" and seeded.status == "active"


def test_a_private_key_or_a_broken_key_is_no_registration() -> None:
    key = RSAKey.generate_key(2048)
    for keys in ([key.as_dict(private=True)], [{"kty": "RSA", "n": "x"}], ["text"]):
        with pytest.raises(ValidationError):
            AppCreate.model_validate(app(kind="confidential", jwks={"keys": keys}))


def test_pkce_s256_is_rfc7636s() -> None:
    # RFC 7636 appendix B
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert PKCE_VERIFIER.match(verifier) and not PKCE_VERIFIER.match("short")


def test_redirect_parameters_are_appended() -> None:
    url = with_query("https://app.example/cb?x=1", {"code": "a b", "state": None})
    assert url == "https://app.example/cb?x=1&code=a+b"
