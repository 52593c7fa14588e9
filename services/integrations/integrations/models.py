"""What integrations keeps: settings, ledger entries of worked time, supply orders, exports.

Payroll works on a **ledger**: every version of a visit adds entries keyed by
``(encounter_id, version, kind)`` and nothing is ever changed in place. A first version adds a
``normal`` entry; a later version (a correction) adds a ``reversal`` (the previous version's
hours, negated, on the previous version's employee, day, unit and cost centre) and a
``correction`` (the new hours); ``entered-in-error`` adds only the reversal. Export files
aggregate pending entries into timesheet lines per employee, day, unit, cost centre and kind.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from pymongo import IndexModel

from akson_common.events import ExportRecipient

LineKind = Literal["normal", "reversal", "correction"]
ExportState = Literal["pending", "exported", "refused"]
ReceivedOutcome = Literal["applied", "duplicate", "superseded", "invalid"]


# the indexes of a feed's items (timesheet entries, supply orders): the exporter claims pending
# ones into batches, the reconciliation counts a day's per unit
FEED_INDEXES = (IndexModel([("state", 1), ("batch", 1)]), IndexModel([("day", 1), ("unit", 1)]))


def token(*parts: str, length: int = 16) -> str:
    """A deterministic identifier without long digit runs (base32: letters and 2-7), so a
    reference can never look like a national identity number to the export policy."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:length]


class TimesheetEntry(BaseModel):
    """One ledger entry: signed hours of one visit version for one employee, day and unit."""

    id: str
    encounter_id: str
    version: int
    kind: LineKind
    employee_id: str
    day: date
    unit: str
    cost_centre: str
    hours: float
    state: ExportState = "pending"
    batch: str | None = None
    export_id: str | None = None
    recorded_at: datetime


class VisitState(BaseModel):
    """The latest version of a visit seen, with every entry it ever contributed."""

    id: str
    version: int
    status: Literal["finished", "entered-in-error"]
    employee_id: str
    day: date
    unit: str
    cost_centre: str
    hours: float
    entries: list[TimesheetEntry] = Field(default_factory=list)
    updated_at: datetime


class SupplyOrder(BaseModel):
    """A replenishment order for one unit and item, placed when use reached the threshold."""

    id: str
    unit: str
    item: str
    quantity: float
    day: date
    sequence: int
    state: ExportState = "pending"
    batch: str | None = None
    export_id: str | None = None
    recorded_at: datetime


class StockCounter(BaseModel):
    """Use of one item in one unit since its last order, and the usages already counted."""

    id: str
    unit: str
    item: str
    accumulated: float = 0.0
    sequence: int = 0
    version: int = 0
    applied: list[str] = Field(default_factory=list)
    orders: list[SupplyOrder] = Field(default_factory=list)


class Violation(BaseModel):
    path: str
    code: str


class ExportRecord(BaseModel):
    """One export attempt that reached a verdict: a file sent, or a refused (dead-lettered)
    payload. A refused payload is kept with the values the policy flagged withheld."""

    id: str
    recipient: ExportRecipient
    status: Literal["exported", "refused"]
    day: date
    unit: str
    file_name: str
    records: int
    entries: list[str]
    reasons: list[str] = Field(default_factory=list)
    violations: list[Violation] = Field(default_factory=list)
    payload: dict[str, Any] | None = None
    decision_id: str | None = None
    policy_version: str | None = None
    at: datetime


class DeadLetter(BaseModel):
    """A refused export as operators see it (``GET /dead-letters``)."""

    id: str
    recipient: ExportRecipient
    day: date
    unit: str
    file_name: str
    records: int
    reasons: list[str]
    violations: list[Violation]
    payload: dict[str, Any] | None
    decision_id: str | None
    policy_version: str | None
    at: datetime


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    next_after: str | None = None


class StateCounts(BaseModel):
    pending: int = 0
    exported: int = 0
    refused: int = 0


class ReconciliationRow(BaseModel):
    """Per day and unit: distinct events received vs what left as lines and orders."""

    date: date
    unit: str
    visits_received: int = 0
    visits_applied: int = 0
    supply_usages_received: int = 0
    timesheet_entries: StateCounts = Field(default_factory=StateCounts)
    timesheet_lines_exported: int = 0
    hours_exported: float = 0.0
    hours_pending: float = 0.0
    orders: StateCounts = Field(default_factory=StateCounts)
    quantity_ordered: float = 0.0
    export_files: int = 0
    refused_files: int = 0


class Reconciliation(BaseModel):
    date: date
    unit: str | None = None
    rows: list[ReconciliationRow]
