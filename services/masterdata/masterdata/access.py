"""Master data as callers reach it: every operation asks the policy first (the routes only
translate HTTP). A patient's master data is decided with that patient's active care relations;
directory data (who works where) is not health data, but the policy still decides; a registry
write is decided with the purpose ``registry``. What a write answers is a read too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from akson_common.auth import Principal
from akson_common.db import Page
from akson_common.errors import Unprocessable
from akson_common.policy import Action, Decision, PolicyContext, PolicyEnforcementPoint, ResourceRef
from masterdata.imports import parse_lines
from masterdata.models import (
    CareRelation,
    CareRelationIn,
    ImportReport,
    Organisation,
    PersonIn,
    PersonPublic,
    Practitioner,
)
from masterdata.service import In, MasterData, Register, Stored, public_view

# Person data is not clinical, but it is about a patient: the policy's "demographics" category.
DEMOGRAPHICS = "demographics"
REVEAL_ADDRESS = "reveal_address"
REGISTRY = PolicyContext(purpose="registry")
IMPORT_TYPES = {
    "persons": "Patient",
    "practitioners": "Practitioner",
    "organisations": "Organization",
    "care-relations": "CareRelation",
}


def same_key(path_value: str, body_value: str, name: str) -> None:
    if path_value != body_value:
        raise Unprocessable(f"{name} in the body differs from the path")


class MasterDataAccess:
    def __init__(self, data: MasterData, pep: PolicyEnforcementPoint) -> None:
        self.data, self.pep = data, pep

    # -- the decisions ---------------------------------------------------------------------

    async def _context(self, patient: str | None) -> PolicyContext:
        relations = await self.data.active_care_relations(patient) if patient else []
        return PolicyContext(
            care_relations=[{**r.model_dump(mode="json"), "active": True} for r in relations]
        )

    async def about_patient(
        self, principal: Principal, action: Action, resource_type: str, patient: str | None
    ) -> Decision:
        """Ask about a patient's master data, giving the policy that patient's relations."""
        resource = ResourceRef(type=resource_type, patient=patient, category=DEMOGRAPHICS)
        return await self.pep.enforce(principal, action, resource, await self._context(patient))

    async def _reads_back(self, principal: Principal, resource_type: str, patient: str) -> bool:
        """What a write about a patient answers is a read of it."""
        resource = ResourceRef(type=resource_type, patient=patient, category=DEMOGRAPHICS)
        context = await self._context(patient)
        return await self.pep.read_back(principal, resource, context) is not None

    async def directory(self, principal: Principal, action: Action, resource_type: str) -> None:
        await self.pep.enforce(principal, action, ResourceRef(type=resource_type), PolicyContext())

    async def _registry_write(
        self, principal: Principal, resource_type: str, patient: str | None = None
    ) -> None:
        resource = ResourceRef(type=resource_type, patient=patient)
        await self.pep.enforce(principal, "write", resource, REGISTRY)

    # -- persons ---------------------------------------------------------------------------

    async def save_person(self, principal: Principal, person: PersonIn) -> PersonPublic | None:
        """Create or update a person; the person as stored (never the address) if the writer
        may read it back, else None."""
        await self._registry_write(principal, "Patient", person.national_id)
        saved = await self.data.persons.save(person)
        if not await self._reads_back(principal, "Patient", person.national_id):
            return None
        return public_view(saved, address_allowed=False)

    async def person(self, principal: Principal, national_id: str) -> PersonPublic:
        decision = await self.about_patient(principal, "read", "Patient", national_id)
        person = await self.data.person(national_id)
        return public_view(person, address_allowed=REVEAL_ADDRESS in decision.obligations)

    async def search_persons(
        self,
        principal: Principal,
        *,
        identifier: str | None,
        name: str | None,
        municipality: str | None,
        count: int,
        after: str | None,
    ) -> Page[PersonPublic]:
        patient = identifier.rsplit("|", 1)[-1] if identifier else None
        decision = await self.about_patient(principal, "search", "Patient", patient)
        page = await self.data.search_persons(
            identifier=patient, name=name, municipality=municipality, count=count, after=after
        )
        allowed = REVEAL_ADDRESS in decision.obligations
        return Page(
            items=[public_view(p, address_allowed=allowed) for p in page.items],
            next_after=page.next_after,
        )

    async def patient(self, principal: Principal, national_id: str) -> PersonPublic | None:
        """The patient (a searchset of at most one), decided like a search of persons."""
        decision = await self.about_patient(principal, "search", "Patient", national_id)
        found = await self.data.persons.repository.get_one_or_none(national_id)
        allowed = REVEAL_ADDRESS in decision.obligations
        return None if found is None else public_view(found, address_allowed=allowed)

    # -- the directory ---------------------------------------------------------------------

    async def save_directory(
        self,
        principal: Principal,
        resource_type: str,
        register: Register[In, Stored],
        path_key: str,
        record: In,
    ) -> Stored | None:
        """Create or update a directory record (idempotent): the path names the record. The
        record if the writer may read it back, else None."""
        same_key(path_key, register.key(record), "the identifier")
        await self._registry_write(principal, resource_type)
        saved = await register.save(record)
        directory = ResourceRef(type=resource_type)
        if await self.pep.read_back(principal, directory, PolicyContext()) is None:
            return None
        return saved

    async def practitioner(
        self, principal: Principal, hpr_number: str, action: Action = "read"
    ) -> Practitioner:
        await self.directory(principal, action, "Practitioner")
        return await self.data.practitioner(hpr_number)

    async def organisation(self, principal: Principal, org_number: str) -> Organisation:
        await self.directory(principal, "read", "Organization")
        return await self.data.organisation(org_number)

    async def search_organisations(
        self,
        principal: Principal,
        *,
        municipality: str | None,
        parent: str | None,
        count: int,
        after: str | None,
    ) -> Page[Organisation]:
        await self.directory(principal, "search", "Organization")
        return await self.data.search_organisations(
            municipality=municipality, parent=parent, count=count, after=after
        )

    # -- care relations --------------------------------------------------------------------

    async def save_care_relation(self, principal: Principal, relation: CareRelationIn) -> None:
        await self._registry_write(principal, "CareRelation", relation.patient)
        await self.data.care_relations.save(relation)

    async def care_relations(self, principal: Principal, patient: str) -> list[CareRelation]:
        await self.about_patient(principal, "search", "CareRelation", patient)
        return await self.data.active_care_relations(patient)

    async def end_care_relation(
        self, principal: Principal, relation_id: str, period_end: date
    ) -> CareRelation | None:
        """The relation as ended if the writer may read it back, else None."""
        await self._registry_write(principal, "CareRelation")
        ended = await self.data.end_care_relation(relation_id, period_end)
        return ended if await self._reads_back(principal, "CareRelation", ended.patient) else None

    # -- bulk import -----------------------------------------------------------------------

    def register_of(self, kind: str) -> Register[Any, Any]:
        register = self.data.registers.get(kind)
        if register is None:
            raise Unprocessable(f"import kinds: {', '.join(self.data.registers)}")
        return register

    async def import_lines(
        self, principal: Principal, kind: str, lines: Sequence[bytes]
    ) -> ImportReport:
        """One decision covers the import: it is a registry write."""
        register = self.register_of(kind)
        await self._registry_write(principal, IMPORT_TYPES[kind])
        try:
            records, report = parse_lines(register, lines)
        except ValueError as error:
            raise Unprocessable(str(error)) from None
        await register.save_many(records, report)
        return report
