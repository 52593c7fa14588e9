"""Read models of master data's facts, kept from its events by every service that decides access.

Access decisions are made from these: a patient's active care relations and registry facts come
from master data's events (``masterdata.care_relation.changed``, ``masterdata.person.changed``),
never from a call to master data at decision time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pymongo import IndexModel

from akson_common.db import Database
from akson_common.events import (
    CARE_RELATION_CHANGED,
    PERSON_CHANGED,
    CareRelationChangedV1,
    Delivery,
    Outcome,
    PersonChangedV1,
    Subscriptions,
)
from akson_common.policy import PatientFacts

PATIENTS = "patients"
CARE_RELATIONS = "care_relations"


class MasterDataProjections:
    """Patients (registry facts, no name or address) and care relations, by patient."""

    def __init__(self, database: Database, subscriptions: Subscriptions) -> None:
        self.patients = database.collection(PATIENTS)
        self.care_relations = database.collection(CARE_RELATIONS)
        database.declare_indexes(CARE_RELATIONS, [IndexModel([("patient", 1)])])
        subscriptions.on(PERSON_CHANGED)(self.on_person_changed)
        subscriptions.on(CARE_RELATION_CHANGED)(self.on_care_relation_changed)

    async def on_person_changed(self, event: PersonChangedV1, delivery: Delivery) -> Outcome:
        await self.patients.update_one(
            {"_id": event.national_id},
            {
                "$set": {
                    **event.model_dump(mode="json", exclude={"national_id"}),
                    "last_event": delivery.event_id,
                    "updated_at": datetime.now(UTC),
                },
                # how many distinct changes were applied: a duplicate delivery must not count
                "$inc": {"applied_changes": 1},
            },
            upsert=True,
        )
        return Outcome.SUCCESS

    async def on_care_relation_changed(
        self, event: CareRelationChangedV1, delivery: Delivery
    ) -> Outcome:
        await self.care_relations.replace_one(
            {"_id": event.relation_id},
            {
                **event.model_dump(mode="json", exclude={"relation_id"}),
                "last_event": delivery.event_id,
            },
            upsert=True,
        )
        return Outcome.SUCCESS

    async def active_care_relations(
        self, patient: str, today: date | None = None
    ) -> list[dict[str, Any]]:
        """The patient's relations in force ``today``, as the policy input's care relations."""
        today_iso = (today or datetime.now(UTC).date()).isoformat()
        relations = []
        async for document in self.care_relations.find({"patient": patient}):
            end = document.get("period_end")
            active = document["period_start"] <= today_iso and (end is None or end >= today_iso)
            relations.append(
                {
                    "relation_id": document["_id"],
                    "patient": patient,
                    "kind": document["kind"],
                    "practitioner": document.get("practitioner"),
                    "unit": document.get("unit"),
                    "active": active,
                }
            )
        return [r for r in relations if r["active"]]

    async def patient_facts(self, patient: str) -> PatientFacts | None:
        """What master data's events said about the patient; None while no event has arrived."""
        document = await self.patients.find_one({"_id": patient})
        if document is None:
            return None
        return PatientFacts(
            protected_address=document.get("address_protection", "none") != "none",
            municipality=document.get("municipality"),
            deceased=bool(document.get("deceased", False)),
        )
