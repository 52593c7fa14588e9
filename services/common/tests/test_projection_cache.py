"""The patient projection's short cache: read once per burst, forgotten when an event about the
patient is applied, never filled by a read that overlapped a write (the collection replaced
at its boundary)."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import pytest
from cachetools import TTLCache
from fastapi import FastAPI

from akson_common.db import Database
from akson_common.events import ConsentDirectiveChangedV1, Delivery, Subscriptions
from akson_common.projections import PatientProjections


class Patients:
    """The ``patients`` collection as the projection uses it: find_one and update_one by _id."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.finds = 0
        self.find_gate: asyncio.Event | None = None
        self.update_gate: asyncio.Event | None = None

    async def find_one(self, selector: dict[str, Any]) -> dict[str, Any] | None:
        self.finds += 1
        found = self.documents.get(selector["_id"])
        snapshot = None if found is None else {**found}
        if self.find_gate is not None:
            await self.find_gate.wait()
        return snapshot

    async def update_one(self, selector: dict[str, Any], update: dict[str, Any], **_: Any) -> None:
        if self.update_gate is not None:
            await self.update_gate.wait()
        document = self.documents.setdefault(selector["_id"], {"_id": selector["_id"]})
        for path, value in update["$set"].items():
            *parents, last = path.split(".")
            target = document
            for name in parents:
                target = target.setdefault(name, {})
            target[last] = value


def projections(cache_seconds: float) -> tuple[PatientProjections, Patients]:
    database = Database("mongodb://127.0.0.1:1/", "unused", timeout_ms=100)  # never connected
    subscriptions = Subscriptions(FastAPI(), database, "pubsub")
    made = PatientProjections(database, subscriptions, directives=True, cache_seconds=cache_seconds)
    patients = Patients()
    made.patients = patients  # type: ignore[assignment]
    return made, patients


def directive(patient: str, version: int) -> ConsentDirectiveChangedV1:
    return ConsentDirectiveChangedV1.model_validate(
        {
            "directive_id": "d1",
            "patient": patient,
            "kind": "block",
            "status": "active",
            "version": version,
            "period_start": date(2026, 1, 1).isoformat(),
        }
    )


DELIVERY = Delivery(event_id="e1", source="consent", subject="p1")


async def test_a_burst_of_decisions_reads_the_patient_once() -> None:
    made, patients = projections(cache_seconds=30)
    patients.documents["p1"] = {"_id": "p1", "municipality": "4601"}
    for _ in range(5):
        assert (await made.context("p1")).patient is not None
    assert patients.finds == 1


async def test_an_applied_event_is_seen_by_the_next_decision() -> None:
    made, patients = projections(cache_seconds=30)
    patients.documents["p1"] = {"_id": "p1", "municipality": "4601"}
    assert (await made.context("p1")).directives == []
    await made.on_directive_changed(directive("p1", 1), DELIVERY)
    assert [d["kind"] for d in (await made.context("p1")).directives] == ["block"]
    assert patients.finds == 2


async def test_a_read_that_overlapped_a_write_is_not_kept() -> None:
    made, patients = projections(cache_seconds=30)
    patients.documents["p1"] = {"_id": "p1", "municipality": "4601"}
    patients.find_gate = asyncio.Event()
    reading = asyncio.create_task(made.context("p1"))  # reads the old document, then waits
    await asyncio.sleep(0)
    await made.on_directive_changed(directive("p1", 1), DELIVERY)
    patients.find_gate.set()
    assert (await reading).directives == []  # what it read before the write
    patients.find_gate = None
    assert [d["kind"] for d in (await made.context("p1")).directives] == ["block"]


async def test_no_cache_when_turned_off() -> None:
    made, patients = projections(cache_seconds=0)
    patients.documents["p1"] = {"_id": "p1"}
    for _ in range(3):
        await made.context("p1")
    assert patients.finds == 3
    with pytest.raises(ValueError):
        projections(cache_seconds=-1)


async def test_an_entry_that_expires_while_it_is_read_is_read_again_never_a_key_error() -> None:
    """The cache's clock moves on between any two of its calls (as under load): an entry that
    is alive when asked whether it is there and expired when fetched once raised KeyError
    (a 500 in make chaos); one lookup either finds it or reads the patient again."""
    made, patients = projections(cache_seconds=1.0)
    patients.documents["p1"] = {"_id": "p1", "municipality": "4601"}
    now = [0.0]

    def clock() -> float:
        now[0] += 0.7  # every look at the clock is 0.7 s later: the second look past the TTL
        return now[0]

    made._cached = TTLCache(maxsize=10, ttl=1.0, timer=clock)
    for _ in range(4):
        assert (await made.context("p1")).patient is not None
    assert patients.finds >= 2  # expired entries were read again
