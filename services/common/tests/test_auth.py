"""Token verification with real keys and a JWKS file (the port replaced at its boundary)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from akson_common.auth import JwksSource, TokenVerifier
from akson_common.errors import ServiceUnavailable, Unauthorized

ISSUER, AUDIENCE = "https://identity.test", "journal"


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)


@pytest.fixture
def verifier(key: RSAKey, tmp_path: Path) -> TokenVerifier:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    return TokenVerifier(
        JwksSource(file=str(jwks)),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=("RS256",),
        leeway_seconds=30,
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "hpr:1",
        "exp": now + 60,
        "iat": now,
        "akson_kind": "practitioner",
        "hpr_number": "1",
        "profession": "LE",
        "scope": "a b",
        **overrides,
    }


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_a_valid_token_yields_the_principal(verifier: TokenVerifier, key: RSAKey) -> None:
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims(), key)
    principal = await verifier.verify(token)
    assert (principal.id, principal.kind, principal.profession) == ("hpr:1", "practitioner", "LE")
    assert principal.scopes == ("a", "b")


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "https://evil.test"},
        {"aud": "masterdata"},
        {"exp": int(time.time()) - 120},
    ],
)
async def test_wrong_issuer_audience_or_expiry_is_refused(
    verifier: TokenVerifier, key: RSAKey, overrides: dict[str, Any]
) -> None:
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims(**overrides), key)
    with pytest.raises(Unauthorized):
        await verifier.verify(token)


async def test_expiry_within_leeway_is_accepted(verifier: TokenVerifier, key: RSAKey) -> None:
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims(exp=int(time.time()) - 10), key)
    assert (await verifier.verify(token)).id == "hpr:1"


async def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    token = f"{b64({'alg': 'none', 'kid': 'k1'})}.{b64(claims())}."
    with pytest.raises(Unauthorized):
        await verifier.verify(token)


async def test_hs256_signed_with_the_public_key_is_refused(
    verifier: TokenVerifier, key: RSAKey
) -> None:
    # The classic key-confusion attack, built by hand: libraries refuse to make this key.
    signing_input = f"{b64({'alg': 'HS256', 'kid': 'k1'})}.{b64(claims())}"
    mac = hmac.new(key.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(Unauthorized):
        await verifier.verify(forged)


async def test_unknown_kid_is_refused(verifier: TokenVerifier) -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "k2"}, private=True)
    token = jwt.encode({"alg": "RS256", "kid": "k2"}, claims(), other)
    with pytest.raises(Unauthorized):
        await verifier.verify(token)


async def test_garbage_is_refused(verifier: TokenVerifier) -> None:
    for token in ("", "a.b", "a.b.c", "x" * 50):
        with pytest.raises(Unauthorized):
            await verifier.verify(token)


def test_leeway_above_60_seconds_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TokenVerifier(
            JwksSource(file=str(tmp_path / "none")),
            issuer=ISSUER,
            audience=AUDIENCE,
            algorithms=("RS256",),
            leeway_seconds=61,
        )


def publish(path: Path, *keys: RSAKey) -> None:
    path.write_text(json.dumps({"keys": [k.as_dict(private=False) for k in keys]}))


async def test_a_key_published_ahead_is_picked_up_when_the_cache_ages(
    key: RSAKey, tmp_path: Path
) -> None:
    jwks = tmp_path / "jwks.json"
    publish(jwks, key)
    # keys and tokens made before the cache's clock starts (slow on a loaded machine)
    upcoming = RSAKey.generate_key(2048, parameters={"kid": "k2"}, private=True)
    signed_now = jwt.encode({"alg": "RS256", "kid": "k1"}, claims(), key)
    signed_by_next = jwt.encode({"alg": "RS256", "kid": "k2"}, claims(), upcoming)
    source = JwksSource(file=str(jwks), max_age_seconds=1.0, min_refresh_seconds=60)
    verifier = TokenVerifier(
        source, issuer=ISSUER, audience=AUDIENCE, algorithms=("RS256",), leeway_seconds=30
    )
    assert (await verifier.verify(signed_now)).id
    publish(jwks, key, upcoming)
    # an unknown kid right after a fetch does not trigger another one (rate limit) ...
    with pytest.raises(Unauthorized):
        await verifier.verify(signed_by_next)
    time.sleep(1.1)
    # ... the aged cache does
    assert (await verifier.verify(signed_by_next)).id == "hpr:1"


async def test_an_unknown_kid_refetches_once_the_rate_limit_allows(
    key: RSAKey, tmp_path: Path
) -> None:
    jwks = tmp_path / "jwks.json"
    publish(jwks, key)
    source = JwksSource(file=str(jwks), max_age_seconds=300, min_refresh_seconds=0)
    assert _kids(await source.keys("k1")) == {"k1"}
    upcoming = RSAKey.generate_key(2048, parameters={"kid": "k2"}, private=True)
    publish(jwks, key, upcoming)
    assert _kids(await source.keys("k1")) == {"k1"}  # known kid: the cache is used
    assert _kids(await source.keys("k2")) == {"k1", "k2"}


async def test_an_unreachable_issuer_keeps_the_known_keys_or_is_unavailable(
    key: RSAKey, tmp_path: Path
) -> None:
    jwks = tmp_path / "jwks.json"
    never = JwksSource(file=str(jwks))
    with pytest.raises(ServiceUnavailable):
        await never.keys("k1")
    publish(jwks, key)
    source = JwksSource(file=str(jwks), max_age_seconds=0.01, min_refresh_seconds=0)
    await source.keys("k1")
    jwks.unlink()
    time.sleep(0.02)
    assert _kids(await source.keys("k1")) == {"k1"}


def _kids(keys: KeySet) -> set[str | None]:
    return {k.kid for k in keys.keys}


def test_every_service_with_token_verification_subscribes_to_disabled_accounts(
    tmp_path: Path,
) -> None:
    from fastapi.testclient import TestClient

    from akson_common.app import create_service
    from akson_common.events import ACCOUNT_DISABLED, ServiceEvents
    from akson_common.settings import ServiceSettings

    settings = ServiceSettings(
        service_name="any", environment="development", jwks_file=str(tmp_path / "jwks.json")
    )
    app = create_service(settings, title="any", events=ServiceEvents(consumes=(ACCOUNT_DISABLED,)))
    topics = {s["topic"] for s in TestClient(app).get("/dapr/subscribe").json()}
    assert topics == {"identity.account.disabled"}


def test_a_principal_survives_the_round_trip_through_claims() -> None:
    from akson_common.auth import Principal

    principal = Principal(
        id="hpr:9144900",
        kind="practitioner",
        hpr_number="9144900",
        profession="LE",
        organisation="974760673",
        unit="974760681",
        municipality="4601",
        roles=("gp",),
        scopes=("a", "b"),
    )
    assert Principal.from_claims(principal.to_claims()) == principal


async def test_a_verified_token_is_not_verified_again_but_never_outlives_its_expiry(
    verifier: TokenVerifier, key: RSAKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims(exp=int(time.time()) + 5), key)
    assert (await verifier.verify(token)).id == "hpr:1"
    decodes = 0
    original = jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal decodes
        decodes += 1
        return original(*args, **kwargs)

    monkeypatch.setattr("akson_common.auth.jwt.decode", counting)
    for _ in range(5):
        assert (await verifier.verify(token)).id == "hpr:1"
    assert decodes == 0, "the signature was checked again"
    # a tampered copy is a different token: verified (and refused) on its own
    header, body, signature = token.split(".")
    tampered = f"{header}.{b64(claims(sub='hpr:2'))}.{signature}"
    with pytest.raises(Unauthorized):
        await verifier.verify(tampered)
    assert decodes == 1
    # past its expiry the cached verification is gone: verified again (within leeway: accepted)
    later = time.time() + 6
    monkeypatch.setattr("akson_common.auth.time.time", lambda: later)
    assert (await verifier.verify(token)).id == "hpr:1"
    assert decodes == 2


async def test_the_fhir_gateways_audience_is_accepted_and_marked_for_fhir_routes_only(
    key: RSAKey, tmp_path: Path
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    verifier = TokenVerifier(
        JwksSource(file=str(jwks)),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=("RS256",),
        leeway_seconds=30,
        fhir_audience="gateway",
    )
    for_gateway = jwt.encode({"alg": "RS256", "kid": "k1"}, claims(aud="gateway"), key)
    own = jwt.encode({"alg": "RS256", "kid": "k1"}, claims(), key)
    assert verifier.only_for_fhir(await verifier.verify_claims(for_gateway))
    assert not verifier.only_for_fhir(await verifier.verify_claims(own))
    other = jwt.encode({"alg": "RS256", "kid": "k1"}, claims(aud="masterdata"), key)
    with pytest.raises(Unauthorized):
        await verifier.verify_claims(other)
