"""The distinct events received, per day and unit, for the reconciliation query.

Keyed by the business identity of an event (a visit's ``(encounter_id, version)``, a supply
usage's id), not by its CloudEvent id: a copy re-published with a new id is counted once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Literal

from pymongo import IndexModel

from akson_common.db import Database, insert_new
from integrations.models import ReceivedOutcome
from integrations.settings import IntegrationsSettings

RECEIVED = "received_events"
EventKind = Literal["visit", "supplies"]


class ReceivedEvents:
    def __init__(self, database: Database) -> None:
        self.collection = database.collection(RECEIVED)
        database.declare_indexes(RECEIVED, [IndexModel([("day", 1), ("unit", 1)])])

    async def applied(self, key: str) -> bool:
        return await self.collection.find_one({"_id": key, "outcome": "applied"}) is not None

    async def record(
        self, key: str, kind: EventKind, day: date, unit: str, outcome: ReceivedOutcome
    ) -> None:
        """The first outcome of an event stays (later copies are duplicates by definition)."""
        await insert_new(
            self.collection,
            [
                {
                    "_id": key,
                    "kind": kind,
                    "day": day.isoformat(),
                    "unit": unit,
                    "outcome": outcome,
                    "at": datetime.now(UTC),
                }
            ],
        )


class Consumer:
    """What payroll and logistics share: the settings, the record of every event received
    (:class:`ReceivedEvents`) and ``on_change``, which wakes the exporter."""

    def __init__(
        self,
        database: Database,
        settings: IntegrationsSettings,
        received: ReceivedEvents,
        on_change: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.received = received
        self.on_change = on_change
        self.open(database)

    def open(self, database: Database) -> None:
        """Its repositories."""
        raise NotImplementedError
