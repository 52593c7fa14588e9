"""Platform tokens through the identity service's real flows, for the local tools (``make
token``, the demo loader) and the tests alike: client credentials with a ``private_key_jwt``
assertion for systems, token exchange of a development upstream token for practitioners and
citizens.

Every function takes the runner's ``endpoints`` (``<run>/endpoints.json``). Whoever must know
which identifiers and tokens went by (the tests' log scan) registers with :func:`observe`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.jwk import RSAKey
from stack import mint_upstream

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_observers: list[Callable[[str], object]] = []


def observe(note: Callable[[str], object]) -> None:
    """Call ``note`` with every personal identifier and token these flows handle from now on."""
    _observers.append(note)


def noted(value: str) -> str:
    for note in _observers:
        note(value)
    return value


def signed_jwt(
    private_key_file: str, issuer: str, subject: str, audience: str, lifetime: int, **claims: Any
) -> str:
    """A JWT (RS256) signed with the JWK in ``private_key_file``."""
    key = RSAKey.import_key(json.loads(Path(private_key_file).read_text()))
    now = int(time.time())
    payload = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        **claims,
    }
    return noted(jwt.encode({"alg": "RS256", "kid": key.kid}, payload, key))


def client_assertion(
    private_key_file: str,
    client_id: str,
    audience: str,
    *,
    lifetime: int = 30,
    jti: str | None = None,
) -> str:
    """A ``private_key_jwt`` client assertion (RFC 7523): iss = sub = the client id."""
    return signed_jwt(
        private_key_file, client_id, client_id, audience, lifetime, jti=jti or uuid.uuid4().hex
    )


def token_response(endpoints: dict[str, Any], form: dict[str, str]) -> httpx.Response:
    return httpx.post(endpoints["identity"]["token_endpoint"], data=form, timeout=10.0)


def client_form(
    endpoints: dict[str, Any],
    audience: str,
    scope: str,
    assertion: str | None = None,
    client_id: str | None = None,
) -> dict[str, str]:
    """Client credentials as the runner's registered test client (or one of its dev clients,
    which share its key pair)."""
    client = endpoints["test_client"]
    token_endpoint = endpoints["identity"]["token_endpoint"]
    client_id = client_id or client["client_id"]
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion
        or client_assertion(client["private_key_file"], client_id, token_endpoint),
        "audience": audience,
        "scope": scope,
    }


def exchange_form(subject_token: str, audience: str) -> dict[str, str]:
    return {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "audience": audience,
    }


def issued(answer: httpx.Response) -> str:
    if answer.status_code != 200:
        raise AssertionError(f"no token: {answer.status_code} {answer.text}")
    token: str = answer.json()["access_token"]
    return noted(token)


def system_token(
    endpoints: dict[str, Any], audience: str, scope: str, client_id: str | None = None
) -> str:
    return issued(
        token_response(endpoints, client_form(endpoints, audience, scope, client_id=client_id))
    )


def citizen_token(endpoints: dict[str, Any], national_id: str, audience: str) -> str:
    noted(national_id)
    upstream = noted(mint_upstream(endpoints, "citizen", national_id))
    return issued(token_response(endpoints, exchange_form(upstream, audience)))


def practitioner_token(
    endpoints: dict[str, Any],
    hpr_number: str,
    audience: str,
    *,
    unit: str | None = None,
    expect: Mapping[str, str | None] | None = None,
    timeout: float = 20.0,
) -> str:
    """Exchange an upstream personnel token (the practitioner logged in at ``unit``) once
    identity's projection (kept from master data's events) shows the ``expect``ed claims:
    retried until the token carries them or time runs out."""
    noted(hpr_number)
    upstream = noted(mint_upstream(endpoints, "personnel", hpr_number, unit=unit, lifetime=300))
    deadline = time.monotonic() + timeout
    while True:
        answer = token_response(endpoints, exchange_form(upstream, audience))
        if answer.status_code == 200:
            token = noted(answer.json()["access_token"])
            claims = json.loads(jws.extract_compact(token.encode()).payload)  # unverified
            if all(claims.get(name) == value for name, value in (expect or {}).items()):
                return token
        if time.monotonic() > deadline:
            raise AssertionError(
                f"identity issued no token with {expect} for the practitioner: "
                f"{answer.status_code} {answer.text}"
            )
        time.sleep(0.1)
