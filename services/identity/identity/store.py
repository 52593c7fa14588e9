"""Identity's own data: client registrations, used client assertions, and its projections of
master data (kept from events, never asked for synchronously)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

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
ASSERTION_SWEEP_SECONDS = 60


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
        self._swept_at = 0
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
