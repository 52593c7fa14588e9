"""Payroll: completed visits become ledger entries of worked time (see ``models``).

Idempotent twice over: the subscription dedupes on the CloudEvent id, and the visit's own
``(encounter_id, version)`` decides what a delivery changes, so a copy re-published with a new
event id, or an older version arriving late, adds nothing. Without multi-document
transactions, the visit document is the source of truth: one compare-and-set on its
``version`` records the new version together with the entries it adds; the ``timesheet_entries``
collection the exporter works on is a projection of those entries, written with their
deterministic ids (a crash in between is repaired by the redelivery).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from akson_common.db import Database, Repository
from akson_common.events import Delivery, Outcome, VisitCompletedV1
from integrations.models import (
    FEED_INDEXES,
    LineKind,
    TimesheetEntry,
    VisitState,
)
from integrations.received import Consumer
from integrations.settings import IntegrationsSettings

log = logging.getLogger("akson.integrations.payroll")

VISITS = "visits"
ENTRIES = "timesheet_entries"
CAS_ATTEMPTS = 8


def worked_hours(event: VisitCompletedV1) -> float:
    return round((event.end - event.start).total_seconds() / 3600, 4)


def cost_centre(settings: IntegrationsSettings, unit: str) -> str:
    """The configured cost centre of a unit; a unit without one is its own cost centre."""
    return settings.cost_centres.get(unit, unit)


def _entry(
    state: VisitState, version: int, kind: LineKind, hours: float, at: datetime
) -> TimesheetEntry:
    return TimesheetEntry(
        id=f"{state.id}:{version}:{kind}",
        encounter_id=state.id,
        version=version,
        kind=kind,
        employee_id=state.employee_id,
        day=state.day,
        unit=state.unit,
        cost_centre=state.cost_centre,
        hours=hours,
        recorded_at=at,
    )


def next_state(
    current: VisitState | None,
    event: VisitCompletedV1,
    settings: IntegrationsSettings,
    at: datetime,
) -> tuple[VisitState, list[TimesheetEntry]]:
    """The visit after ``event`` (newer than ``current``) and the entries that adds.

    Never an overwrite: an earlier counted version is offset by a ``reversal`` and the new
    hours come as a ``correction``; ``entered-in-error`` only reverses.
    """
    finished = event.status == "finished"
    state = VisitState(
        id=event.encounter_id,
        version=event.version,
        status=event.status,
        employee_id=event.performer,
        day=event.start.astimezone(ZoneInfo(settings.timezone)).date(),
        unit=event.unit,
        cost_centre=cost_centre(settings, event.unit),
        hours=worked_hours(event) if finished else 0.0,
        entries=list(current.entries) if current else [],
        updated_at=at,
    )
    added: list[TimesheetEntry] = []
    if current is not None and current.status == "finished":
        added.append(_entry(current, event.version, "reversal", -current.hours, at))
    if finished:
        kind: LineKind = "normal" if current is None else "correction"
        added.append(_entry(state, event.version, kind, state.hours, at))
    state.entries.extend(added)
    return state, added


def valid(event: VisitCompletedV1) -> bool:
    return event.status == "entered-in-error" or event.end > event.start


class Payroll(Consumer):
    def open(self, database: Database) -> None:
        self.visits = Repository(database, VISITS, VisitState)
        self.entries = Repository(database, ENTRIES, TimesheetEntry, indexes=FEED_INDEXES)

    async def on_visit_completed(self, event: VisitCompletedV1, delivery: Delivery) -> Outcome:
        key = f"visit:{event.encounter_id}:{event.version}"
        day = event.start.astimezone(ZoneInfo(self.settings.timezone)).date()
        if not valid(event):
            await self.received.record(key, "visit", day, event.unit, "invalid")
            log.warning("visit ends before it starts: dropped", extra={"key": key})
            return Outcome.DROP
        for _ in range(CAS_ATTEMPTS):
            current = await self.visits.get_one_or_none(event.encounter_id)
            if current is not None and current.version >= event.version:
                if current.version == event.version:
                    # a copy of the version we hold: add nothing, but repair the projection
                    # (and the received record) should the first delivery have stopped halfway
                    await self.entries.insert_new(current.entries)
                    await self.received.record(key, "visit", day, event.unit, "applied")
                else:
                    await self.received.record(key, "visit", day, event.unit, "superseded")
                return Outcome.SUCCESS
            state, added = next_state(current, event, self.settings, datetime.now(UTC))
            if not await self.visits.compare_and_set(
                None if current is None else current.version, state
            ):
                continue  # another delivery of this visit won the race: look again
            await self.entries.insert_new(added)
            await self.received.record(key, "visit", day, event.unit, "applied")
            self.on_change()
            return Outcome.SUCCESS
        return Outcome.RETRY
