"""What operators read: the reconciliation per day and unit, and the dead letters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from pymongo import IndexModel

from akson_common.auth import Principal
from akson_common.db import Database, Repository
from akson_common.policy import PolicyContext, PolicyEnforcementPoint, ResourceRef
from integrations.exports import EXPORTS, NATIONAL_ID, WITHHELD
from integrations.logistics import ORDERS
from integrations.models import (
    DeadLetter,
    DeadLetterPage,
    ExportRecord,
    Reconciliation,
    ReconciliationRow,
)
from integrations.payroll import ENTRIES
from integrations.received import RECEIVED

RESOURCE_TYPE = "IntegrationExport"
OPERATIONS = PolicyContext(purpose="operations")


class Reports:
    """The operators' views (not health data; the policy still decides: a ``search`` of
    ``IntegrationExport`` for the purpose ``operations``)."""

    def __init__(self, database: Database, pep: PolicyEnforcementPoint) -> None:
        self.database = database
        self.pep = pep
        self.exports = Repository(
            database,
            EXPORTS,
            ExportRecord,
            indexes=(IndexModel([("status", 1)]), IndexModel([("day", 1), ("unit", 1)])),
        )

    async def _each(self, collection: str, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        cursor = self.database.collection(collection).find(dict(query))
        return [document async for document in cursor]

    async def _may_search(self, principal: Principal) -> None:
        await self.pep.enforce(principal, "search", ResourceRef(type=RESOURCE_TYPE), OPERATIONS)

    async def reconciliation(
        self, principal: Principal, day: date, unit: str | None
    ) -> Reconciliation:
        """Per unit on ``day``: distinct events received, entries and orders by state, what
        the exported files held. Everything counted is keyed by the event's own identity, so
        a replay leaves these figures unchanged."""
        await self._may_search(principal)
        query: dict[str, Any] = {"day": day.isoformat()}
        if unit is not None:
            query["unit"] = unit
        rows: dict[str, ReconciliationRow] = {}

        def row(of: str) -> ReconciliationRow:
            # a unit value shaped like a national id is withheld here too
            label = NATIONAL_ID.sub(WITHHELD, of)
            return rows.setdefault(label, ReconciliationRow(date=day, unit=label))

        for received in await self._each(RECEIVED, query):
            current = row(received["unit"])
            if received["kind"] == "visit":
                current.visits_received += 1
                current.visits_applied += received["outcome"] == "applied"
            else:
                current.supply_usages_received += 1
        for entry in await self._each(ENTRIES, query):
            current = row(entry["unit"])
            state = entry["state"]
            setattr(current.timesheet_entries, state, getattr(current.timesheet_entries, state) + 1)
            if state == "exported":
                current.hours_exported = round(current.hours_exported + entry["hours"], 4)
            elif state == "pending":
                current.hours_pending = round(current.hours_pending + entry["hours"], 4)
        for order in await self._each(ORDERS, query):
            current = row(order["unit"])
            state = order["state"]
            setattr(current.orders, state, getattr(current.orders, state) + 1)
            if state == "exported":
                current.quantity_ordered = round(current.quantity_ordered + order["quantity"], 6)
        for export in await self._each(EXPORTS, query):
            current = row(export["unit"])
            if export["status"] == "exported":
                current.export_files += 1
                if export["recipient"] == "payroll":
                    current.timesheet_lines_exported += export["records"]
            else:
                current.refused_files += 1
        return Reconciliation(date=day, unit=unit, rows=[rows[name] for name in sorted(rows)])

    async def dead_letters(
        self, principal: Principal, after: str | None, limit: int
    ) -> DeadLetterPage:
        """Exports the minimisation policy refused: never sent, kept with their reasons."""
        await self._may_search(principal)
        page = await self.exports.paginate({"status": "refused"}, limit=limit, after=after)
        return DeadLetterPage(
            items=[
                DeadLetter.model_validate(record.model_dump(exclude={"status", "entries"}))
                for record in page.items
            ],
            next_after=page.next_after,
        )
