"""The database layer and the outbox against the real FerretDB, one isolated database per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from pymongo import IndexModel

from akson_common.db import Database, Repository
from akson_common.outbox import OUTBOX_FIELD, Outbox
from tests.integration.conftest import Platform

pytestmark = pytest.mark.integration


class Unit(BaseModel):
    her_id: str
    name: str
    municipality: str


@pytest.fixture
async def database(platform: Platform) -> AsyncIterator[Database]:
    db = Database(platform.endpoints["mongo"]["url"], f"test_{uuid.uuid4().hex[:12]}")
    try:
        yield db
    finally:
        await db.client.drop_database(db.db.name)
        await db.close()


async def test_repository_round_trip_indexes_and_keyset_paging(database: Database) -> None:
    units = Repository(
        database, "units", Unit, id_field="her_id", indexes=[IndexModel([("municipality", 1)])]
    )
    await database.bootstrap()
    index_keys = [list(ix["key"]) async for ix in await units.collection.list_indexes()]
    assert ["municipality"] in index_keys
    await units.collection.insert_many(
        [
            units.to_document(Unit(her_id=f"{n:05d}", name=f"Unit {n}", municipality="4601"))
            for n in range(25)
        ]
    )
    assert await units.get_one_or_none("00007") == Unit(
        her_id="00007", name="Unit 7", municipality="4601"
    )
    assert await units.get_one_or_none("missing") is None
    seen: list[str] = []
    after = None
    while True:
        page = await units.paginate({"municipality": "4601"}, limit=10, after=after)
        seen += [u.her_id for u in page.items]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == [f"{n:05d}" for n in range(25)]


class RecordingPublisher:
    def __init__(self, fail: bool = False) -> None:
        self.published: list[dict[str, Any]] = []
        self.fail = fail

    async def publish(self, envelope: dict[str, Any]) -> None:
        if self.fail:
            raise ConnectionError("sidecar away")
        self.published.append(envelope)


async def test_outbox_keeps_events_until_published_and_publishes_in_order(
    database: Database,
) -> None:
    publisher = RecordingPublisher(fail=True)
    outbox = Outbox(database, publisher, sweep_seconds=60)  # type: ignore[arg-type]
    outbox.track("things")
    events = [{"id": f"e{n}", "topic": "t", "subject": "s"} for n in range(3)]
    await outbox.save("things", {"_id": "a"}, {"$set": {"v": 1}}, events[:2], upsert=True)
    await outbox.save("things", {"_id": "a"}, {"$set": {"v": 2}}, events[2:])
    with pytest.raises(ConnectionError):
        await outbox.relay_once()
    stored = await database.collection("things").find_one({"_id": "a"})
    assert stored is not None and stored["v"] == 2 and len(stored[OUTBOX_FIELD]) == 3

    publisher.fail = False
    assert await outbox.relay_once() == 3
    assert [e["id"] for e in publisher.published] == ["e0", "e1", "e2"]
    stored = await database.collection("things").find_one({"_id": "a"})
    assert stored is not None and stored[OUTBOX_FIELD] == []
    assert await outbox.relay_once() == 0
