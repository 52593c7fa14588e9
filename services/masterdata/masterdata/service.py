"""Master data logic: every change is stored together with its event (outbox).

Each kind of record lives in a :class:`Register`: one collection keyed on the record's national
identifier, upserts that are idempotent (an unchanged record writes nothing and publishes
nothing), and one event per real change. A single PUT and a bulk import go the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from pymongo import IndexModel

from akson_common.app import Platform
from akson_common.db import Document, Page, Repository
from akson_common.errors import NotFound, Unprocessable
from akson_common.events import (
    CARE_RELATION_CHANGED,
    ORGANISATION_CHANGED,
    PERSON_CHANGED,
    PRACTITIONER_CHANGED,
    CareRelationChangedV1,
    EventPayload,
    OrganisationChangedV1,
    PersonChangedV1,
    PractitionerChangedV1,
    Topic,
    cloud_event,
)
from akson_common.outbox import OUTBOX_FIELD, Outbox
from masterdata.models import (
    CareRelation,
    CareRelationIn,
    ImportReport,
    Organisation,
    OrganisationIn,
    Person,
    PersonIn,
    PersonPublic,
    Practitioner,
    PractitionerIn,
    Record,
)

PERSONS = "persons"
PRACTITIONERS = "practitioners"
ORGANISATIONS = "organisations"
CARE_RELATIONS = "care_relations"
BATCH = 2000

In = TypeVar("In", bound=Record)
Stored = TypeVar("Stored", bound=BaseModel)


def today() -> date:
    return datetime.now(UTC).date()


@dataclass
class Register(Generic[In, Stored]):
    """One kind of master data record: its collection, its key and the event a change causes."""

    outbox: Outbox
    repository: Repository[Stored]
    record: type[In]
    topic: Topic[Any]
    event: Callable[[In], EventPayload]
    subject: Callable[[In], str]

    @property
    def name(self) -> str:
        return self.repository.collection_name

    def key(self, record: In) -> str:
        return str(getattr(record, self.repository.id_field))

    async def save(self, record: In) -> Stored:
        """Create or update one record (idempotent); return it as stored."""
        await self.save_many([record])
        stored = await self.repository.get_one_or_none(self.key(record))
        assert stored is not None
        return stored

    async def save_many(self, records: Sequence[In], report: ImportReport | None = None) -> None:
        """Upsert records with distinct keys; unchanged ones write and publish nothing."""
        report = report if report is not None else ImportReport()
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            # Insert first, look up only what existed: an import is mostly new records, and an
            # ``_id`` ``$in`` scans the whole collection in FerretDB v1 (an import of 100,000
            # grew quadratically with one lookup per batch). Each document with its event is
            # one write; for the ones that existed nothing was written.
            new = [
                ({"_id": self.key(r), **self._state(r), "revision": 1}, [self._event(r)])
                for r in batch
            ]
            existed = await self.outbox.insert_many(self.name, new)
            now = await self._existing(list(existed)) if existed else {}
            changed: list[In] = []
            for record in batch:
                key = self.key(record)
                if key not in existed:
                    report.created += 1
                elif key in now and _same(now[key], self._state(record)):
                    report.unchanged += 1
                else:
                    changed.append(record)
            for record in changed:
                await self.outbox.save(
                    self.name,
                    {"_id": self.key(record)},
                    {"$set": self._state(record), "$inc": {"revision": 1}},
                    [self._event(record)],
                    upsert=True,
                )
            report.updated += len(changed)

    async def _existing(self, keys: list[str]) -> dict[str, Document]:
        # One query for the records of a batch that existed (FerretDB v1 scans for an $in).
        cursor = self.repository.collection.find({"_id": {"$in": keys}}, {OUTBOX_FIELD: 0})
        return {document["_id"]: document async for document in cursor}

    def _state(self, record: In) -> dict[str, Any]:
        return record.model_dump(mode="json", exclude={self.repository.id_field})

    def _event(self, record: In) -> dict[str, Any]:
        return cloud_event(
            self.topic, self.event(record), source="masterdata", subject=self.subject(record)
        )


def _same(existing: Document, state: dict[str, Any]) -> bool:
    return all(existing.get(key) == value for key, value in state.items())


def _person_event(person: PersonIn) -> PersonChangedV1:
    return PersonChangedV1(
        national_id=person.national_id,
        municipality=person.municipality,
        address_protection=person.address_protection,
        deceased=person.date_of_death is not None,
    )


def _practitioner_event(practitioner: PractitionerIn) -> PractitionerChangedV1:
    day = today()
    return PractitionerChangedV1(
        hpr_number=practitioner.hpr_number,
        status=practitioner.status,
        professions=practitioner.professions_on(day),
        units=practitioner.units_on(day),
        name=f"{practitioner.given_name} {practitioner.family_name}",
    )


def _organisation_event(organisation: OrganisationIn) -> OrganisationChangedV1:
    return OrganisationChangedV1.model_validate(organisation.model_dump(mode="json"))


def _care_relation_event(relation: CareRelationIn) -> CareRelationChangedV1:
    return CareRelationChangedV1.model_validate(relation.model_dump())


class MasterData:
    def __init__(self, platform: Platform) -> None:
        database, outbox = platform.database, platform.outbox
        self.persons = Register(
            outbox,
            Repository(
                database,
                PERSONS,
                Person,
                id_field="national_id",
                indexes=[IndexModel([("municipality", 1)]), IndexModel([("family_name", 1)])],
            ),
            PersonIn,
            PERSON_CHANGED,
            _person_event,
            lambda p: p.national_id,
        )
        self.practitioners = Register(
            outbox,
            Repository(
                database,
                PRACTITIONERS,
                Practitioner,
                id_field="hpr_number",
                indexes=[IndexModel([("employments.unit", 1)])],
            ),
            PractitionerIn,
            PRACTITIONER_CHANGED,
            _practitioner_event,
            lambda p: p.hpr_number,
        )
        self.organisations = Register(
            outbox,
            Repository(
                database,
                ORGANISATIONS,
                Organisation,
                id_field="org_number",
                indexes=[IndexModel([("municipality", 1)]), IndexModel([("parent", 1)])],
            ),
            OrganisationIn,
            ORGANISATION_CHANGED,
            _organisation_event,
            lambda o: o.org_number,
        )
        # The access policy depends on "the active relations of this patient": indexed on it.
        self.care_relations = Register(
            outbox,
            Repository(
                database,
                CARE_RELATIONS,
                CareRelation,
                id_field="relation_id",
                indexes=[IndexModel([("patient", 1), ("period_end", 1)])],
            ),
            CareRelationIn,
            CARE_RELATION_CHANGED,
            _care_relation_event,
            lambda r: r.patient,
        )
        for register in self.registers.values():
            outbox.track(register.name)

    @property
    def registers(self) -> dict[str, Register[Any, Any]]:
        """By the path segment of the import route."""
        return {
            "persons": self.persons,
            "practitioners": self.practitioners,
            "organisations": self.organisations,
            "care-relations": self.care_relations,
        }

    # -- persons ---------------------------------------------------------------------------

    async def person(self, national_id: str) -> Person:
        return _found(await self.persons.repository.get_one_or_none(national_id), "person")

    async def search_persons(
        self,
        *,
        identifier: str | None,
        name: str | None,
        municipality: str | None,
        count: int,
        after: str | None,
    ) -> Page[Person]:
        query: dict[str, Any] = {}
        if identifier:
            query["_id"] = identifier.rsplit("|", 1)[-1]
        if municipality:
            query["municipality"] = municipality
        if name:
            prefix = {"$regex": f"^{re.escape(name)}", "$options": "i"}
            query["$or"] = [{"family_name": prefix}, {"given_name": prefix}]
        if not query:
            raise Unprocessable("search by identifier, name or municipality")
        return await self.persons.repository.paginate(query, limit=count, after=after)

    # -- practitioners and organisations ---------------------------------------------------

    async def practitioner(self, hpr_number: str) -> Practitioner:
        found = await self.practitioners.repository.get_one_or_none(hpr_number)
        return _found(found, "practitioner")

    async def organisation(self, org_number: str) -> Organisation:
        found = await self.organisations.repository.get_one_or_none(org_number)
        return _found(found, "organisation")

    async def search_organisations(
        self, *, municipality: str | None, parent: str | None, count: int, after: str | None
    ) -> Page[Organisation]:
        query = {k: v for k, v in (("municipality", municipality), ("parent", parent)) if v}
        return await self.organisations.repository.paginate(query, limit=count, after=after)

    # -- care relations --------------------------------------------------------------------

    async def active_care_relations(
        self, patient: str, day: date | None = None
    ) -> list[CareRelation]:
        """What the access policy depends on: the patient's relations in force on ``day``."""
        iso = (day or today()).isoformat()
        query = {
            "patient": patient,
            "period_start": {"$lte": iso},
            "$or": [{"period_end": None}, {"period_end": {"$gte": iso}}],
        }
        return await self.care_relations.repository.find(query, limit=1000, sort="_id")

    async def end_care_relation(self, relation_id: str, period_end: date) -> CareRelation:
        found = await self.care_relations.repository.get_one_or_none(relation_id)
        relation = _found(found, "care relation")
        try:
            ended = CareRelationIn.model_validate(
                {**relation.model_dump(exclude={"revision"}), "period_end": period_end}
            )
        except ValueError:
            raise Unprocessable("period_end is before the relation started") from None
        return await self.care_relations.save(ended)


T = TypeVar("T")


def _found(value: T | None, what: str) -> T:
    if value is None:
        raise NotFound(f"no such {what}")
    return value


def public_view(person: Person, *, address_allowed: bool) -> PersonPublic:
    """A protected address leaves the service only when the policy said so."""
    values = person.model_dump()
    if person.address_protection != "none" and not address_allowed:
        values["address"] = None
    return PersonPublic.model_validate(values)
