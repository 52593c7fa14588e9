"""Messaging's read models beyond the shared patient projection: organisations and units
(HER-ids, on or off the platform) and practitioners' units. Kept from master data's events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from akson_common.projections import DirectoryProjections


@dataclass(frozen=True)
class Party:
    """A communication party messages are addressed to."""

    her_id: str
    organisation: str
    on_platform: bool


class Directory(DirectoryProjections):
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
