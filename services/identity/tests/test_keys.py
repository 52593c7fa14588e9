"""The signing-key schedule: which key signs and which keys the JWKS publishes, over time."""

from __future__ import annotations

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
