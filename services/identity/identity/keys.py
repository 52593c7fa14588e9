"""Signing keys and their rotation, without downtime and without a moment of shared state.

Each key is stored with the time it starts signing (``signs_from``). Everything else follows
from those times, so any number of identity replicas agree without coordination:

* the *active* key is the newest one whose ``signs_from`` has passed; it signs;
* a *next* key (``signs_from`` still ahead) is published in the JWKS but does not sign yet,
  so every service has fetched it before the first token it signs reaches them;
* a *retired* key stays published until the last token it signed has expired (its
  successor's ``signs_from`` plus the token lifetime plus the verifiers' maximum leeway).

The private keys live in identity's own database, never in git or in a log, and never in the
clear: each is stored as a JWE (A256KW + A256GCM) under a key-encryption key (KEK) that comes
from a mounted secret, so a database client (or a backup) reads no private key material.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jwe, jwt
from joserfc.jwk import OctKey, RSAKey

from akson_common.db import Database

SIGNING_KEYS = "signing_keys"
MAX_VERIFIER_LEEWAY = 60
ALGORITHM = "RS256"
KEY_WRAPPING = {"alg": "A256KW", "enc": "A256GCM"}


def key_encryption_key(encoded: str) -> OctKey:
    """The KEK from its base64url form (32 random bytes, e.g. ``secrets.token_urlsafe(32)``)."""
    key = OctKey.import_key({"kty": "oct", "k": encoded.strip()})
    if len(key.raw_value) != 32:
        raise ValueError("the key-encryption key must be 32 bytes (base64url)")
    return key


def seal(private_jwk: dict[str, Any], kek: OctKey) -> str:
    """A private JWK encrypted under ``kek`` (compact JWE naming the KEK by its thumbprint)."""
    header = {**KEY_WRAPPING, "kid": kek.thumbprint(), "cty": "jwk+json"}
    return jwe.encrypt_compact(header, json.dumps(private_jwk).encode(), kek)


def unseal(sealed: str, kek: OctKey) -> dict[str, Any]:
    private_jwk: dict[str, Any] = json.loads(jwe.decrypt_compact(sealed, kek).plaintext or b"")
    return private_jwk


@dataclass(frozen=True)
class SigningKey:
    kid: str
    signs_from: float
    key: RSAKey

    def public(self) -> dict[str, Any]:
        return {**self.key.as_dict(private=False), "kid": self.kid, "use": "sig", "alg": ALGORITHM}


def schedule(
    keys: list[SigningKey], now: float, retention: float
) -> tuple[SigningKey, list[SigningKey]]:
    """The key that signs at ``now`` and the keys the JWKS publishes (next, active, retired
    ones whose tokens may still be valid); ``keys`` sorted by ``signs_from``."""
    started = [k for k in keys if k.signs_from <= now]
    if not started:
        raise LookupError("no signing key has started signing")
    active = started[-1]
    published = [active, *(k for k in keys if k.signs_from > now)]
    for older, successor in zip(started, started[1:], strict=False):
        if successor.signs_from + retention > now:
            published.append(older)
    return active, published


class SigningKeys:
    """The key ring in the database, read at most once per ``reread_seconds`` (a rotation's
    publication lead must exceed it plus the verifiers' JWKS cache age)."""

    def __init__(
        self,
        database: Database,
        token_lifetime_seconds: int,
        kek: OctKey | None,
        reread_seconds: float = 1.0,
    ) -> None:
        """``kek``: the key-encryption key; None only where no key is ever read or made."""
        self.keys = database.collection(SIGNING_KEYS)
        self._kek = kek
        self.retention = token_lifetime_seconds + MAX_VERIFIER_LEEWAY
        self.reread_seconds = reread_seconds
        self._ring: list[SigningKey] = []
        self._read_at = -reread_seconds
        # importing an RSA private key costs tens of milliseconds; a kid's key never changes
        self._imported: dict[str, RSAKey] = {}

    async def _all(self) -> list[SigningKey]:
        if time.monotonic() - self._read_at < self.reread_seconds:
            return self._ring
        ring = []
        async for document in self.keys.find({}):
            kid = document["_id"]
            if "private_jwk" in document:  # stored in the clear before keys were sealed
                document["private_jwe"] = seal(document["private_jwk"], self.kek)
                await self.keys.update_one(
                    {"_id": kid},
                    {
                        "$set": {"private_jwe": document["private_jwe"]},
                        "$unset": {"private_jwk": ""},
                    },
                )
            if kid not in self._imported:
                self._imported[kid] = RSAKey.import_key(unseal(document["private_jwe"], self.kek))
            ring.append(SigningKey(kid, float(document["signs_from"]), self._imported[kid]))
        self._ring = sorted(ring, key=lambda k: (k.signs_from, k.kid))
        self._read_at = time.monotonic()
        return self._ring

    async def add(self, signs_from: float) -> str:
        kid = f"{time.strftime('%Y%m%d', time.gmtime(signs_from))}-{uuid.uuid4().hex[:8]}"
        key = RSAKey.generate_key(2048, private=True)
        sealed = seal(key.as_dict(private=True), self.kek)
        await self.keys.insert_one({"_id": kid, "signs_from": signs_from, "private_jwe": sealed})
        self._read_at = -self.reread_seconds
        return kid

    @property
    def kek(self) -> OctKey:
        if self._kek is None:
            raise RuntimeError("identity has no key-encryption key (key_encryption_key_file)")
        return self._kek

    async def ensure_one(self) -> None:
        """The first start: one key that signs at once (nothing can hold an older JWKS)."""
        if await self.keys.find_one({}) is None:
            await self.add(time.time())

    async def rotate(self, publish_lead_seconds: float) -> str:
        """Publish a new key now; it starts signing after ``publish_lead_seconds``."""
        return await self.add(time.time() + publish_lead_seconds)

    async def _partition(self, now: float) -> tuple[SigningKey, list[SigningKey]]:
        return schedule(await self._all(), now, self.retention)

    async def jwks(self) -> dict[str, Any]:
        _, published = await self._partition(time.time())
        return {"keys": [k.public() for k in published]}

    async def sign(self, claims: dict[str, Any]) -> str:
        active, _ = await self._partition(time.time())
        header = {"alg": ALGORITHM, "kid": active.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, active.key)

    async def prune(self) -> int:
        """Forget keys no token can still be verified with."""
        now = time.time()
        _, published = await self._partition(now)
        keep = [k.kid for k in published]
        result = await self.keys.delete_many({"_id": {"$nin": keep}, "signs_from": {"$lt": now}})
        return result.deleted_count
