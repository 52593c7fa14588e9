"""The signing-key schedule: which key signs and which keys the JWKS publishes, over time."""

from __future__ import annotations

from pathlib import Path

import pytest
from joserfc.jwk import RSAKey

from identity.keys import SigningKey, schedule

RETENTION = 360.0


@pytest.fixture(scope="module")
def rsa() -> RSAKey:
    return RSAKey.generate_key(2048, private=True)


def keys(rsa: RSAKey, *starts: float) -> list[SigningKey]:
    return [SigningKey(f"k{n}", start, rsa) for n, start in enumerate(starts)]


def kids(published: list[SigningKey]) -> set[str]:
    return {k.kid for k in published}


def test_the_first_key_signs_at_once(rsa: RSAKey) -> None:
    active, published = schedule(keys(rsa, 100.0), 100.0, RETENTION)
    assert active.kid == "k0" and kids(published) == {"k0"}


def test_a_next_key_is_published_before_it_signs(rsa: RSAKey) -> None:
    active, published = schedule(keys(rsa, 0.0, 600.0), 300.0, RETENTION)
    assert active.kid == "k0"
    assert kids(published) == {"k0", "k1"}


def test_the_retired_key_stays_until_its_last_token_expired(rsa: RSAKey) -> None:
    ring = keys(rsa, 0.0, 600.0)
    active, published = schedule(ring, 600.0, RETENTION)
    assert active.kid == "k1" and kids(published) == {"k0", "k1"}
    _, still = schedule(ring, 600.0 + RETENTION - 1, RETENTION)
    assert kids(still) == {"k0", "k1"}
    _, later = schedule(ring, 600.0 + RETENTION, RETENTION)
    assert kids(later) == {"k1"}


def test_no_key_has_started_is_an_error_not_an_unsigned_token(rsa: RSAKey) -> None:
    with pytest.raises(LookupError):
        schedule(keys(rsa, 50.0), 10.0, RETENTION)


# -- sealed at rest ---------------------------------------------------------------------------

PRIVATE_PARAMETERS = {"d", "p", "q", "dp", "dq", "qi"}


def test_a_sealed_key_holds_no_private_parameter_and_opens_with_its_kek_only(rsa: RSAKey) -> None:
    import secrets

    from joserfc.errors import JoseError

    from identity.keys import key_encryption_key, seal, unseal

    kek = key_encryption_key(secrets.token_urlsafe(32))
    private_jwk = rsa.as_dict(private=True)
    sealed = seal(private_jwk, kek)
    assert all(f'"{name}"' not in sealed for name in PRIVATE_PARAMETERS)
    assert str(private_jwk["d"]) not in sealed
    assert unseal(sealed, kek) == private_jwk
    with pytest.raises(JoseError):
        unseal(sealed, key_encryption_key(secrets.token_urlsafe(32)))


def test_a_kek_must_be_256_bits_and_is_required_outside_development(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from identity.keys import key_encryption_key
    from identity.settings import IdentitySettings

    with pytest.raises(ValueError, match="32 bytes"):
        key_encryption_key("c2hvcnQ")
    with pytest.raises(ValidationError, match="key_encryption_key_file"):
        IdentitySettings(
            service_name="identity", environment="production", dapr_api_token="x" * 32,
            app_api_token="y" * 32, partition_key_secret="z" * 32, opa_token="o" * 32,
            jwks_url="https://identity/jwks",
        )  # fmt: skip
    kek_file = tmp_path / "kek"
    kek_file.write_text("A" * 43 + "\n")
    settings = IdentitySettings(service_name="identity", environment="development",
                                key_encryption_key_file=str(kek_file))  # fmt: skip
    kek = settings.kek()
    assert kek is not None and len(kek.raw_value) == 32
