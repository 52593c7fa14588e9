"""The identity service on the real stack: both grants end to end, every forged or replayed
credential refused, key rotation under traffic, and a suspension that ends every session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from stack import KEY_PUBLISH_LEAD_SECONDS, ROOT, mint_upstream

from akson_common.auth import token_header, unverified_claims
from identity.keys import key_encryption_key, unseal
from tests.integration.conftest import Platform, eventually
from tests.support import client_assertion, new_patient_id

pytestmark = pytest.mark.integration

_hpr_serial = iter(range(81_000_000, 82_000_000))


def kid_of(token: str) -> str:
    return str(token_header(token)["kid"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def jwks(platform: Platform) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(platform.endpoints["identity"]["jwks_uri"]).json()
    return document


def identity_signing_key(platform: Platform) -> RSAKey:
    """The active signing key, read from identity's database (to forge near-valid tokens)."""
    published = {key["kid"] for key in jwks(platform)["keys"]}
    stored = [
        d
        for d in platform.db("identity").signing_keys.find({})
        if d["_id"] in published and d["signs_from"] <= time.time()
    ]
    newest = max(stored, key=lambda d: d["signs_from"])
    private_jwk = unseal(newest["private_jwe"], key_encryption_key(kek_file(platform).read_text()))
    return RSAKey.import_key({**private_jwk, "kid": newest["_id"]})


def kek_file(platform: Platform) -> Path:
    """The key-encryption key of identity's stored signing keys (a secret file)."""
    return Path(
        platform.stack.processes["identity-app"].env["AKSON_IDENTITY_KEY_ENCRYPTION_KEY_FILE"]
    )


# -- discovery and the two grants ------------------------------------------------------------


def test_discovery_names_the_endpoints_and_the_jwks_holds_public_keys_only(
    platform: Platform, http: httpx.Client
) -> None:
    identity = platform.endpoints["identity"]
    metadata = http.get(f"{identity['issuer']}/.well-known/openid-configuration").json()
    assert metadata["issuer"] == identity["issuer"]
    assert metadata["token_endpoint"] == identity["token_endpoint"]
    assert metadata["jwks_uri"] == identity["jwks_uri"]
    # private_key_jwt for confidential clients; none for public SMART apps (PKCE binds the code)
    assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt", "none"]
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in metadata["grant_types_supported"]
    keys = jwks(platform)["keys"]
    assert keys and all(key["kid"] and key["kty"] == "RSA" for key in keys)
    assert not any({"d", "p", "q", "dp", "dq", "qi"} & key.keys() for key in keys)


def test_client_credentials_give_a_short_lived_scoped_token_that_masterdata_accepts(
    platform: Platform, http: httpx.Client
) -> None:
    answer = platform.token_response(platform.client_form("masterdata", "Patient.write"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    issued = answer.json()
    assert issued["token_type"] == "Bearer" and issued["scope"] == "Patient.write"
    token = issued["access_token"]
    claims = unverified_claims(token)
    assert claims["iss"] == platform.endpoints["identity"]["issuer"]
    assert claims["aud"] == "masterdata" and claims["akson_kind"] == "system"
    assert claims["sub"] == platform.endpoints["test_client"]["client_id"]
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert kid_of(token) in {key["kid"] for key in jwks(platform)["keys"]}
    patient = new_patient_id()
    person = {"national_id": patient, "given_name": "A", "family_name": "B", "municipality": "4601"}
    saved = http.put(
        f"{platform.url('masterdata')}/persons/{patient}", json=person, headers=bearer(token)
    )
    assert saved.status_code == 200, saved.text


def test_a_scope_the_client_is_not_granted_or_an_unknown_audience_is_refused(
    platform: Platform,
) -> None:
    too_much = platform.token_response(platform.client_form("masterdata", "Identity.admin"))
    assert too_much.status_code == 400 and too_much.json()["error"] == "invalid_scope"
    elsewhere = platform.token_response(platform.client_form("example.org", "Patient.read"))
    assert elsewhere.status_code == 400 and elsewhere.json()["error"] == "invalid_target"


def test_token_exchange_enriches_a_practitioner_from_master_data(
    platform: Platform, http: httpx.Client
) -> None:
    hpr = str(next(_hpr_serial))
    token = platform.token(
        "masterdata",
        subject=f"hpr:{hpr}",
        kind="practitioner",
        hpr_number=hpr,
        profession="SP",
        organisation="974760673",
        unit="unit-home-care",
        municipality="1804",
    )
    claims = unverified_claims(token)
    assert claims["sub"] == f"hpr:{hpr}" and claims["akson_kind"] == "practitioner"
    assert claims["hpr_number"] == hpr and claims["profession"] == "SP"
    assert claims["organisation"] == "974760673" and claims["municipality"] == "1804"
    assert claims["unit"] != "unit-home-care" and len(claims["unit"]) == 9
    own = http.get(f"{platform.url('masterdata')}/practitioners/{hpr}", headers=bearer(token))
    assert own.status_code == 200, own.text


def test_claims_the_upstream_token_adds_are_not_taken_on_trust(platform: Platform) -> None:
    hpr = str(next(_hpr_serial))
    platform.token("journal", subject=f"hpr:{hpr}", kind="practitioner", hpr_number=hpr)
    upstream = _upstream_token(
        platform,
        "personnel",
        {
            "helseid://claims/hpr/hpr_number": hpr,
            "profession": "LE",
            "akson_kind": "system",
            "scope": "Patient.write",
            "roles": ["admin"],
        },
    )
    claims = unverified_claims(platform.exchange(upstream, "journal"))
    assert claims["profession"] == "LE" and claims["akson_kind"] == "practitioner"
    assert "scope" not in claims and "roles" not in claims


def test_an_unknown_practitioner_gets_no_token(platform: Platform) -> None:
    upstream = mint_upstream(platform.endpoints, "personnel", str(next(_hpr_serial)))
    refused = platform.token_response(platform.exchange_form(upstream, "journal"))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_token_exchange_for_a_citizen_carries_the_municipality_master_data_holds(
    platform: Platform, http: httpx.Client
) -> None:
    national_id = new_patient_id()
    registry = bearer(platform.token("masterdata", subject="folkeregister", kind="system",
                                     scope="Patient.write"))  # fmt: skip
    person = {
        "national_id": national_id,
        "given_name": "Kari",
        "family_name": "Syntetisk",
        "municipality": "5001",
    }
    saved = http.put(
        f"{platform.url('masterdata')}/persons/{national_id}", json=person, headers=registry
    )
    assert saved.status_code == 200
    eventually(lambda: platform.db("identity").persons.find_one({"_id": national_id}))
    token = platform.token("masterdata", subject=national_id, kind="citizen")
    claims = unverified_claims(token)
    assert claims["sub"] == national_id and claims["akson_kind"] == "citizen"
    assert claims["municipality"] == "5001"
    own = http.get(f"{platform.url('masterdata')}/persons/{national_id}", headers=bearer(token))
    assert own.status_code == 200 and own.json()["given_name"] == "Kari"


# -- forged bearer tokens at a resource server: 401, problem+json, no data, no decision -------


def _forged(platform: Platform, case: str) -> str:
    key = identity_signing_key(platform)
    issuer = platform.endpoints["identity"]["issuer"]
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": "masterdata",
        "sub": "akson-test-client",
        "iat": now,
        "exp": now + 120,
        "akson_kind": "system",
        "scope": "Patient.read",
    }
    header: dict[str, Any] = {"alg": "RS256", "kid": key.kid}
    if case == "alg none":
        head = b64(json.dumps({"alg": "none", "kid": key.kid}).encode())
        return f"{head}.{b64(json.dumps(claims).encode())}."
    if case == "HS256 with the public key":
        public_pem = key.as_pem(private=False)
        head = b64(json.dumps({"alg": "HS256", "kid": key.kid}).encode())
        body = b64(json.dumps(claims).encode())
        mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64(mac)}"
    if case == "unknown kid":
        stranger = RSAKey.generate_key(2048, parameters={"kid": "not-ours"}, private=True)
        return jwt.encode({"alg": "RS256", "kid": "not-ours"}, claims, stranger)
    if case == "wrong issuer":
        claims["iss"] = "https://evil.example"
    elif case == "wrong audience":
        claims["aud"] = "journal"
    elif case == "expired beyond leeway":
        claims["iat"], claims["exp"] = now - 400, now - 61
    else:
        raise AssertionError(case)
    return jwt.encode(header, claims, key)


FORGERIES = [
    "alg none",
    "HS256 with the public key",
    "unknown kid",
    "wrong issuer",
    "wrong audience",
    "expired beyond leeway",
]


@pytest.mark.parametrize("case", FORGERIES)
def test_a_forged_or_misdirected_token_is_refused_before_any_data(
    platform: Platform, http: httpx.Client, case: str
) -> None:
    national_id = new_patient_id()
    writer = bearer(platform.token("masterdata", subject="s", kind="system", scope="Patient.write"))
    person = {"national_id": national_id, "given_name": "Hemmelig", "family_name": "Navnesen",
              "municipality": "4601"}  # fmt: skip
    url = f"{platform.url('masterdata')}/persons/{national_id}"
    assert http.put(url, json=person, headers=writer).status_code == 200
    refused = http.get(url, headers=bearer(_forged(platform, case)))
    assert refused.status_code == 401, (case, refused.text)
    assert refused.headers["content-type"] == "application/problem+json"
    assert "Hemmelig" not in refused.text and "akson-decision-id" not in refused.headers


def test_the_untampered_control_token_is_accepted(platform: Platform, http: httpx.Client) -> None:
    """The forgeries above fail for their one defect: the same token without it passes."""
    key = identity_signing_key(platform)
    now = int(time.time())
    claims = {"iss": platform.endpoints["identity"]["issuer"], "aud": "masterdata",
              "sub": "akson-test-client", "iat": now, "exp": now + 60, "akson_kind": "system",
              "scope": "Patient.read"}  # fmt: skip
    token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
    answer = http.get(f"{platform.url('masterdata')}/persons/{new_patient_id()}",
                      headers=bearer(token))  # fmt: skip
    assert answer.status_code == 404


# -- client assertions and subject tokens at the token endpoint -------------------------------


def _assertion(platform: Platform, **options: Any) -> str:
    client = platform.endpoints["test_client"]
    return client_assertion(
        client["private_key_file"],
        client["client_id"],
        platform.endpoints["identity"]["token_endpoint"],
        **options,
    )


def test_a_client_assertion_is_accepted_once(platform: Platform) -> None:
    assertion = _assertion(platform)
    first = platform.token_response(platform.client_form("masterdata", "", assertion))
    assert first.status_code == 200, first.text
    replay = platform.token_response(platform.client_form("masterdata", "", assertion))
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    assert "access_token" not in replay.text


def test_a_client_assertion_expiring_more_than_5_min_ahead_is_refused(platform: Platform) -> None:
    # SMART Backend Services: exp no more than five minutes in the future
    answer = platform.token_response(
        platform.client_form("masterdata", "", _assertion(platform, lifetime=330))
    )
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    within = platform.token_response(
        platform.client_form("masterdata", "", _assertion(platform, lifetime=280))
    )
    assert within.status_code == 200


def test_a_client_assertion_signed_by_another_key_is_refused(
    platform: Platform, tmp_path: Path
) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "akson-test-client-1"}, private=True)
    key_file = tmp_path / "stranger.json"
    key_file.write_text(json.dumps(stranger.as_dict(private=True)))
    assertion = client_assertion(
        str(key_file),
        platform.endpoints["test_client"]["client_id"],
        platform.endpoints["identity"]["token_endpoint"],
    )
    answer = platform.token_response(platform.client_form("masterdata", "", assertion))
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def _upstream_token(platform: Platform, who: str, extra: dict[str, Any], **changes: Any) -> str:
    upstream = platform.endpoints["upstream"][who]
    key = RSAKey.import_key(json.loads(Path(upstream["private_key_file"]).read_text()))
    now = int(time.time())
    claims = {"iss": upstream["issuer"], "aud": upstream["audience"], "sub": "pseudonym",
              "iat": now, "exp": now + 60, **extra, **changes}  # fmt: skip
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "https://idporten.example"},
        {"aud": "someone-else"},
        {"exp": int(time.time()) - 120},
        {"sign_with": "the citizen issuer's key"},
        {"alg": "none"},
    ],
    ids=["unknown issuer", "wrong audience", "expired", "other issuer's key", "alg none"],
)
def test_a_bad_subject_token_is_an_invalid_grant(
    platform: Platform, changes: dict[str, Any]
) -> None:
    national_id = new_patient_id()
    if changes.get("alg") == "none":
        upstream = platform.endpoints["upstream"]["citizen"]
        claims = {"iss": upstream["issuer"], "aud": upstream["audience"], "pid": national_id,
                  "exp": int(time.time()) + 60}  # fmt: skip
        none_header = b64(json.dumps({"alg": "none"}).encode())
        token = f"{none_header}.{b64(json.dumps(claims).encode())}."
    elif "sign_with" in changes:
        personnel = platform.endpoints["upstream"]["personnel"]
        key = RSAKey.import_key(json.loads(Path(personnel["private_key_file"]).read_text()))
        upstream = platform.endpoints["upstream"]["citizen"]
        claims = {"iss": upstream["issuer"], "aud": upstream["audience"], "pid": national_id,
                  "exp": int(time.time()) + 60}  # fmt: skip
        token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
    else:
        token = _upstream_token(platform, "citizen", {"pid": national_id}, **changes)
    answer = platform.token_response(platform.exchange_form(token, "masterdata"))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant"
    assert "access_token" not in answer.text


# -- key rotation under traffic ----------------------------------------------------------------


def test_no_request_fails_across_a_key_rotation(platform: Platform) -> None:
    url = f"{platform.url('masterdata')}/persons/{new_patient_id()}"
    old_token = platform.token("masterdata", subject="s", kind="system", scope="Patient.read")
    old_kid = kid_of(old_token)
    outcomes: list[tuple[str, int]] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=10.0) as client:
            while not stop.is_set():
                fresh = platform.client_token("masterdata", "Patient.read")
                for token in (fresh, old_token):
                    status = client.get(url, headers=bearer(token)).status_code
                    outcomes.append((kid_of(token), status))

    loop = threading.Thread(target=traffic)
    loop.start()
    try:
        time.sleep(1)
        rotated = _rotate(platform)
        time.sleep(KEY_PUBLISH_LEAD_SECONDS + 3)
    finally:
        stop.set()
        loop.join()
    new_kid = rotated.split()[3].rstrip(":")
    failures = [o for o in outcomes if o[1] != 404]
    assert not failures, failures[:5]
    assert {kid for kid, _ in outcomes} == {old_kid, new_kid}
    assert len(outcomes) > 20
    published = {key["kid"] for key in jwks(platform)["keys"]}
    assert {old_kid, new_kid} <= published  # the old key stays until its tokens expired


def _rotate(platform: Platform) -> str:
    env = {
        **os.environ,
        "AKSON_IDENTITY_ENVIRONMENT": "development",
        "AKSON_IDENTITY_MONGO_URL": platform.endpoints["mongo"]["url"],
        "AKSON_IDENTITY_KEY_ENCRYPTION_KEY_FILE": str(kek_file(platform)),
    }
    done = subprocess.run(
        [sys.executable, "-m", "identity.cli", "rotate", "--lead", str(KEY_PUBLISH_LEAD_SECONDS)],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


# -- suspension ends every session -------------------------------------------------------------


def test_a_suspended_practitioner_gets_no_token_and_old_tokens_die_within_5_s(
    platform: Platform, http: httpx.Client
) -> None:
    hpr = str(next(_hpr_serial))
    token = platform.token("masterdata", subject=f"hpr:{hpr}", kind="practitioner",
                           hpr_number=hpr, unit="unit-suspended")  # fmt: skip
    own = f"{platform.url('masterdata')}/practitioners/{hpr}"
    record = http.get(own, headers=bearer(token))
    assert record.status_code == 200
    writer = bearer(platform.token("masterdata", subject="hpr-sync", kind="system",
                                   scope="Practitioner.write"))  # fmt: skip
    suspended = {k: v for k, v in record.json().items() if k != "revision"}
    suspended["status"] = "suspended"
    started = time.monotonic()
    assert http.put(own, json=suspended, headers=writer).status_code == 200

    upstream = mint_upstream(platform.endpoints, "personnel", hpr)

    def refused_exchange() -> bool:
        answer = platform.token_response(platform.exchange_form(upstream, "masterdata"))
        return answer.status_code == 400 and answer.json()["error"] == "invalid_grant"

    _within(refused_exchange, 5.0)
    exchange_refused_after = time.monotonic() - started
    _within(lambda: http.get(own, headers=bearer(token)).status_code == 401, 5.0, started)
    token_refused_after = time.monotonic() - started
    answer = http.get(own, headers=bearer(token))
    assert answer.status_code == 401 and "Syntetisk" not in answer.text
    assert "disabled" in answer.json()["detail"]
    print(  # noqa: T201
        f"\nsuspension: exchange refused after {exchange_refused_after:.2f} s, "
        f"old token refused after {token_refused_after:.2f} s"
    )


def _within(check: Callable[[], bool], seconds: float, since: float | None = None) -> None:
    deadline = (since if since is not None else time.monotonic()) + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.05)
