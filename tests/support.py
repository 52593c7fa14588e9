"""Test helpers shared by the cross-service tests: hand-made JWTs (client assertions, forged
tokens), synthetic people."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from akson_common.identifiers import synthetic_national_id

_sequence = itertools.count()


def new_patient_id() -> str:
    """A fresh synthetic national id, unique within the test run."""
    n = next(_sequence)
    return synthetic_national_id(date(1950 + n // 300 % 49, 1 + n // 25 % 12, 1 + n % 25), 0)


def mint_token(
    private_key_file: str,
    issuer: str,
    audience: str,
    *,
    subject: str,
    kind: str,
    lifetime: int = 120,
    **claims: Any,
) -> str:
    key = RSAKey.import_key(json.loads(Path(private_key_file).read_text()))
    now = int(time.time())
    payload = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "exp": now + lifetime,
        "akson_kind": kind,
        **claims,
    }
    return jwt.encode({"alg": "RS256", "kid": key.kid}, payload, key)


def client_assertion(
    private_key_file: str,
    client_id: str,
    audience: str,
    *,
    lifetime: int = 30,
    jti: str | None = None,
) -> str:
    """A ``private_key_jwt`` client assertion (RFC 7523): iss = sub = the client id."""
    key = RSAKey.import_key(json.loads(Path(private_key_file).read_text()))
    now = int(time.time())
    payload = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": jti or uuid.uuid4().hex,
    }
    return jwt.encode({"alg": "RS256", "kid": key.kid}, payload, key)
