"""Identity's own data: client registrations, used client assertions, and its projections of
master data (kept from events, never asked for synchronously)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import IndexModel

from akson_common.db import Database, DuplicateKeyError, Repository
from akson_common.events import (
    ACCOUNT_DISABLED,
    AccountDisabledV1,
    OrganisationChangedV1,
    PersonChangedV1,
    PractitionerChangedV1,
    cloud_event,
)
from akson_common.outbox import Outbox
from identity.models import ClientRegistration, OrganisationFacts, PersonFacts, PractitionerFacts

PRACTITIONERS = "practitioners"
USED_ASSERTIONS = "used_client_assertions"
# SMART App Launch: pending authorisation requests, codes, EHR launches and refresh tokens;
# each by a hash of its secret handle (a database reader cannot use one)
AUTHORIZATION_REQUESTS = "authorization_requests"
AUTHORIZATION_CODES = "authorization_codes"
LAUNCHES = "launches"
PATIENT_PICKS = "patient_picks"
REFRESH_TOKENS = "refresh_tokens"
FLOWS = (AUTHORIZATION_REQUESTS, AUTHORIZATION_CODES, LAUNCHES, PATIENT_PICKS)
ASSERTION_SWEEP_SECONDS = 60
FLOW_SWEEP_SECONDS = 60


def digest(handle: str) -> str:
    """How a secret handle (code, refresh token, request or launch id) is stored: its SHA-256."""
    return hashlib.sha256(handle.encode()).hexdigest()


def practitioner_subject(hpr_number: str) -> str:
    return f"hpr:{hpr_number}"


class IdentityStore:
    def __init__(self, database: Database, outbox: Outbox) -> None:
        self.clients = Repository(database, "clients", ClientRegistration, id_field="client_id")
        self.practitioners = Repository(
            database, PRACTITIONERS, PractitionerFacts, id_field="hpr_number"
        )
        self.persons = Repository(database, "persons", PersonFacts, id_field="national_id")
        self.organisations = Repository(
            database, "organisations", OrganisationFacts, id_field="org_number"
        )
        self.used_assertions = database.collection(USED_ASSERTIONS)
        self.authorization_requests = database.collection(AUTHORIZATION_REQUESTS)
        self.authorization_codes = database.collection(AUTHORIZATION_CODES)
        self.launches = database.collection(LAUNCHES)
        self.refresh_tokens = database.collection(REFRESH_TOKENS)
        database.declare_indexes(
            REFRESH_TOKENS, [IndexModel([("family", 1)]), IndexModel([("expires_at", 1)])]
        )
        for name in FLOWS:
            database.declare_indexes(name, [IndexModel([("expires_at", 1)])])
        self._swept_at = self._flows_swept_at = 0
        self.database = database
        self.outbox = outbox
        outbox.track(PRACTITIONERS)

    async def use_assertion_once(self, client_id: str, jti: str, expires_at: int) -> bool:
        """Record a client assertion's jti; False when it was seen before (a replay)."""
        try:
            await self.used_assertions.insert_one(
                {"_id": f"{client_id}:{jti}", "expires_at": expires_at}
            )
        except DuplicateKeyError:
            return False
        return True

    async def forget_expired_assertions(self, now: int) -> None:
        """An expired assertion is refused on its exp alone: its jti need not be kept."""
        if now - self._swept_at >= ASSERTION_SWEEP_SECONDS:
            self._swept_at = now
            await self.used_assertions.delete_many({"expires_at": {"$lt": now}})

    async def keep(self, collection: str, handle: str, record: dict[str, Any]) -> None:
        """Keep a flow's record (a pending request, a code, a launch) under its handle's hash."""
        await self.database.collection(collection).insert_one({**record, "_id": digest(handle)})

    async def take(self, collection: str, handle: str, now: int) -> dict[str, Any] | None:
        """The record once (it is deleted as it is read), None if unknown, used or expired."""
        record = await self.database.collection(collection).find_one_and_delete(
            {"_id": digest(handle)}
        )
        if record is None or int(record.get("expires_at", 0)) < now:
            return None
        return dict(record)

    async def forget_expired_flows(self, now: int) -> None:
        """Requests, codes, launches and refresh tokens past their expiry (a used code or
        refresh token is kept until then: presenting it again revokes its family)."""
        if now - self._flows_swept_at >= FLOW_SWEEP_SECONDS:
            self._flows_swept_at = now
            for name in (*FLOWS, REFRESH_TOKENS):
                await self.database.collection(name).delete_many({"expires_at": {"$lt": now}})

    async def keep_once(self, collection: str, handle: str, record: dict[str, Any]) -> None:
        """Keep a code or refresh token (its ``family``: the grant it belongs to) for
        :meth:`use_once`."""
        await self.keep(collection, handle, {**record, "used": False, "revoked": False})

    async def use_once(self, collection: str, handle: str, now: int) -> dict[str, Any] | None:
        """The code's or refresh token's record, marked used (a refresh token rotates). One used
        before revokes its whole family's refresh tokens (presented twice, it was stolen:
        neither copy may go on); None then, as for an unknown, revoked or expired one."""
        records = self.database.collection(collection)
        handle_digest = digest(handle)
        record = await records.find_one_and_update(
            {"_id": handle_digest, "used": False, "revoked": False}, {"$set": {"used": True}}
        )
        if record is None:
            seen = await records.find_one({"_id": handle_digest})
            if seen is not None:
                await self.refresh_tokens.update_many(
                    {"family": seen["family"]}, {"$set": {"revoked": True}}
                )
            return None
        if int(record.get("expires_at", 0)) < now:
            return None
        return dict(record)

    async def revoke_app_refresh_tokens(self, client_id: str) -> None:
        await self.refresh_tokens.update_many({"client_id": client_id}, {"$set": {"revoked": True}})

    async def save_practitioner(self, event: PractitionerChangedV1) -> None:
        """Keep the practitioner's facts; a suspension or revocation disables the account in
        the same write as the event that tells every service (outbox)."""
        facts = PractitionerFacts.model_validate(event.model_dump(exclude={"name"}))
        document = self.practitioners.to_document(facts)
        events = []
        if event.status != "active":
            disabled = AccountDisabledV1(
                subject=practitioner_subject(event.hpr_number),
                disabled_at=datetime.now(UTC),
                reason=event.status,
            )
            subject = disabled.subject
            events.append(
                cloud_event(ACCOUNT_DISABLED, disabled, source="identity", subject=subject)
            )
        update = {"$set": {k: v for k, v in document.items() if k != "_id"}}
        await self.outbox.save(PRACTITIONERS, {"_id": document["_id"]}, update, events, upsert=True)

    async def save_person(self, event: PersonChangedV1) -> None:
        await self.persons.upsert(PersonFacts.model_validate(event.model_dump()))

    async def save_persons(self, events: Sequence[PersonChangedV1]) -> None:
        await self.persons.upsert_many(
            [PersonFacts.model_validate(event.model_dump()) for event in events]
        )

    async def save_organisation(self, event: OrganisationChangedV1) -> None:
        await self.organisations.upsert(
            OrganisationFacts.model_validate(
                event.model_dump(include={"org_number", "parent", "municipality"})
            )
        )
