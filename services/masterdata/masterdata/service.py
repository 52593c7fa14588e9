"""Master data logic: every change is stored together with its event (outbox)."""

from __future__ import annotations

from typing import Any

from pymongo import IndexModel

from akson_common.app import Platform
from akson_common.db import Repository
from akson_common.events import (
    CARE_RELATION_CHANGED,
    PERSON_CHANGED,
    CareRelationChangedV1,
    PersonChangedV1,
    cloud_event,
)
from akson_common.outbox import OUTBOX_FIELD
from masterdata.models import CareRelationIn, Person, PersonIn, PersonPublic

PERSONS = "persons"
CARE_RELATIONS = "care_relations"


class MasterData:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.outbox = platform.outbox
        self.persons = Repository(
            platform.database,
            PERSONS,
            Person,
            id_field="national_id",
            indexes=[IndexModel([("municipality", 1)])],
        )
        self.care_relations = platform.database.collection(CARE_RELATIONS)
        Repository(
            platform.database,
            CARE_RELATIONS,
            CareRelationIn,
            id_field="relation_id",
            indexes=[IndexModel([("patient", 1)])],
        )
        self.outbox.track(PERSONS)
        self.outbox.track(CARE_RELATIONS)

    async def save_person(self, person: PersonIn) -> Person:
        """Create or update a person (idempotent on the national id); publish what changed."""
        state = person.model_dump(mode="json", exclude={"national_id"})
        existing = await self.persons.collection.find_one(
            {"_id": person.national_id}, {OUTBOX_FIELD: 0}
        )
        if existing is not None and _same(existing, state):
            return self.persons.to_model(existing)
        event = cloud_event(
            PERSON_CHANGED,
            PersonChangedV1(
                national_id=person.national_id,
                municipality=person.municipality,
                address_protection=person.address_protection,
                deceased=person.date_of_death is not None,
            ),
            source="masterdata",
            subject=person.national_id,
        )
        document = await self.outbox.save(
            PERSONS,
            {"_id": person.national_id},
            {"$set": state, "$inc": {"revision": 1}},
            [event],
            upsert=True,
        )
        assert document is not None
        return self.persons.to_model(document)

    async def person(self, national_id: str) -> Person | None:
        return await self.persons.get_one_or_none(national_id)

    async def save_care_relation(self, relation: CareRelationIn) -> None:
        state = relation.model_dump(mode="json", exclude={"relation_id"})
        event = cloud_event(
            CARE_RELATION_CHANGED,
            CareRelationChangedV1.model_validate(relation.model_dump()),
            source="masterdata",
            subject=relation.patient,
        )
        await self.outbox.save(
            CARE_RELATIONS, {"_id": relation.relation_id}, {"$set": state}, [event], upsert=True
        )


def _same(existing: dict[str, Any], state: dict[str, Any]) -> bool:
    return all(existing.get(key) == value for key, value in state.items())


def public_view(person: Person, *, address_allowed: bool) -> PersonPublic:
    """A protected address leaves the service only when the policy said so."""
    values = person.model_dump()
    if person.address_protection != "none" and not address_allowed:
        values["address"] = None
    return PersonPublic.model_validate(values)
