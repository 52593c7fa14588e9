"""Messaging's read models beyond master data's patients and care relations: organisations and
units (HER-ids, on or off the platform), practitioners' units, and the patients' consent
directives (so a block counts when personnel send a message). Kept from events only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pymongo import IndexModel

from akson_common.db import Database
from akson_common.events import (
    CONSENT_DIRECTIVE_CHANGED,
    ORGANISATION_CHANGED,
    PRACTITIONER_CHANGED,
    ConsentDirectiveChangedV1,
    Delivery,
    OrganisationChangedV1,
    Outcome,
    PractitionerChangedV1,
    Subscriptions,
)

ORGANISATIONS = "organisations"
PRACTITIONERS = "practitioners"
DIRECTIVES = "directives"


@dataclass(frozen=True)
class Party:
    """A communication party messages are addressed to."""

    her_id: str
    organisation: str
    on_platform: bool


class Directory:
    def __init__(self, database: Database, subscriptions: Subscriptions) -> None:
        self.organisations = database.collection(ORGANISATIONS)
        self.practitioners = database.collection(PRACTITIONERS)
        self.directives = database.collection(DIRECTIVES)
        database.declare_indexes(DIRECTIVES, [IndexModel([("patient", 1)])])
        subscriptions.on(ORGANISATION_CHANGED)(self.on_organisation_changed)
        subscriptions.on(PRACTITIONER_CHANGED)(self.on_practitioner_changed)
        subscriptions.on(CONSENT_DIRECTIVE_CHANGED)(self.on_directive_changed)

    async def on_organisation_changed(
        self, event: OrganisationChangedV1, delivery: Delivery
    ) -> Outcome:
        await self.organisations.replace_one(
            {"_id": event.org_number},
            {
                **event.model_dump(mode="json", exclude={"org_number"}),
                "last_event": delivery.event_id,
            },
            upsert=True,
        )
        return Outcome.SUCCESS

    async def on_practitioner_changed(
        self, event: PractitionerChangedV1, delivery: Delivery
    ) -> Outcome:
        await self.practitioners.replace_one(
            {"_id": event.hpr_number},
            {"status": event.status, "units": list(event.units), "last_event": delivery.event_id},
            upsert=True,
        )
        return Outcome.SUCCESS

    async def on_directive_changed(
        self, event: ConsentDirectiveChangedV1, delivery: Delivery
    ) -> Outcome:
        # a reordered, older version never overwrites a newer one
        document = {**event.model_dump(mode="json"), "last_event": delivery.event_id}
        current = await self.directives.find_one({"_id": event.directive_id}, {"version": 1})
        if current is None or int(current.get("version", 0)) < event.version:
            await self.directives.replace_one({"_id": event.directive_id}, document, upsert=True)
        return Outcome.SUCCESS

    async def party(self, org_number: str) -> Party | None:
        """The organisation or unit as a communication party: its own HER-id, else its parent's."""
        unit = await self.organisations.find_one({"_id": org_number})
        if unit is None:
            return None
        her_id = unit.get("her_id")
        if not her_id and unit.get("parent"):
            parent = await self.organisations.find_one({"_id": unit["parent"]})
            her_id = parent.get("her_id") if parent else None
        if not her_id:
            return None
        return Party(str(her_id), org_number, bool(unit.get("on_platform", True)))

    async def gp_party(self, relation: dict[str, Any]) -> Party | None:
        """Where a GP-list relation's practitioner is reached: the relation's unit, else the
        units master data lists for the practitioner, first that is known."""
        units: list[str] = [relation["unit"]] if relation.get("unit") else []
        if not units and relation.get("practitioner"):
            practitioner = await self.practitioners.find_one({"_id": relation["practitioner"]})
            units = list(practitioner.get("units", [])) if practitioner else []
        for unit in units:
            party = await self.party(unit)
            if party is not None:
                return party
        return None

    async def policy_directives(
        self, patient: str, day: date | None = None
    ) -> list[dict[str, Any]]:
        """The patient's directives as the policy input's ``context.directives``."""
        today = (day or datetime.now(UTC).date()).isoformat()
        directives = []
        async for document in self.directives.find({"patient": patient}):
            document.pop("_id", None)
            document.pop("last_event", None)
            end = document.get("period_end")
            active = (
                document.get("status") == "active"
                and document["period_start"] <= today
                and (end is None or end >= today)
            )
            directives.append({**document, "active": active})
        return directives
