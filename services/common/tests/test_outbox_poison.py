"""The outbox relay: an event the sidecar refuses is dead-lettered after bounded attempts and the
events behind it go out; a sidecar that is away is waited for (no event given up); documents that
only carry events (enforced decisions) are deleted once published; the relay scans a collection
only at start-up (and after a failure), never for what it wrote itself."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httpx
import pytest
from pymongo import DeleteOne, UpdateOne

from akson_common.enforcement import ENFORCED, EnforcementLog
from akson_common.events import DECISIONS_ENFORCED, ServiceEvents, UndeclaredTopic
from akson_common.outbox import DEAD_LETTERS, MAX_PUBLISH_ATTEMPTS, OUTBOX_FIELD, SENT, Outbox


class MemoryCollection:
    def __init__(self, name: str) -> None:
        self.name = name
        self.documents: list[dict[str, Any]] = []
        self.scans = 0  # finds: each one a scan of the collection in FerretDB v1

    async def insert_one(self, document: dict[str, Any]) -> None:
        self.documents.append(document)

    async def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> None:
        self.documents.extend(documents)

    async def find_one(
        self, selector: dict[str, Any], projection: Any = None
    ) -> dict[str, Any] | None:
        return next((d for d in self.documents if d["_id"] == selector["_id"]), None)

    async def delete_one(self, selector: dict[str, Any]) -> None:
        self.documents = [d for d in self.documents if d["_id"] != selector["_id"]]

    def find(self, selector: dict[str, Any], projection: Any = None) -> Any:
        self.scans += 1

        async def documents() -> Any:
            for document in list(self.documents):
                yield document

        return documents()

    async def bulk_write(
        self, operations: list[UpdateOne | DeleteOne], ordered: bool = True
    ) -> None:
        for operation in operations:
            if isinstance(operation, DeleteOne):
                await self.delete_one(cast(dict[str, Any], operation._filter))
                continue
            selector, update = operation._filter, cast(dict[str, Any], operation._doc)
            pulled = update["$pullAll"][OUTBOX_FIELD]
            for document in self.documents:
                if document["_id"] == selector["_id"]:
                    document[OUTBOX_FIELD] = [e for e in document[OUTBOX_FIELD] if e not in pulled]


class MemoryDatabase:
    def __init__(self) -> None:
        self.collections: dict[str, MemoryCollection] = {}

    def declare_indexes(self, collection: str, indexes: list[Any]) -> None:
        pass

    def collection(self, name: str) -> MemoryCollection:
        return self.collections.setdefault(name, MemoryCollection(name))


class Sidecar:
    """Refuses the events whose id is in ``refused`` with ``status``; records the others."""

    def __init__(self, refused: set[str], status: int) -> None:
        self.refused, self.status = refused, status
        self.published: list[str] = []

    async def publish(self, envelope: dict[str, Any]) -> None:
        if envelope["id"] in self.refused:
            request = httpx.Request("POST", "http://sidecar/v1.0/publish/pubsub/t")
            response = httpx.Response(self.status, request=request)
            raise httpx.HTTPStatusError("refused", request=request, response=response)
        self.published.append(envelope["id"])

    async def publish_bulk(self, topic: str, envelopes: list[dict[str, Any]]) -> set[str]:
        """Dapr's bulk publish: the refused events come back as failed entries."""
        self.published.extend(e["id"] for e in envelopes if e["id"] not in self.refused)
        return {e["id"] for e in envelopes if e["id"] in self.refused}


def pending(database: MemoryDatabase) -> list[dict[str, Any]]:
    collection = database.collection("things")
    collection.documents = [
        {"_id": "a", OUTBOX_FIELD: [{"id": "poison", "topic": "t", "subject": "p1"}]},
        {"_id": "b", OUTBOX_FIELD: [{"id": "good", "topic": "t", "subject": "p2"}]},
    ]
    return collection.documents


LOGS_DECISIONS = ServiceEvents(publishes=(DECISIONS_ENFORCED,))


async def relay(outbox: Outbox, database: MemoryDatabase) -> None:
    collection = database.collection("things")
    await outbox._relay_chunk(collection, list(collection.documents))  # type: ignore[arg-type]


async def test_a_refused_event_is_dead_lettered_after_bounded_attempts() -> None:
    database = MemoryDatabase()
    sidecar = Sidecar({"poison"}, 400)
    outbox = Outbox(database, sidecar, 1.0, ServiceEvents())  # type: ignore[arg-type]
    documents = pending(database)
    for _ in range(MAX_PUBLISH_ATTEMPTS - 1):
        with pytest.raises(httpx.HTTPStatusError):
            await relay(outbox, database)
    await relay(outbox, database)  # the last attempt gives up on the poison, the chunk drains
    assert all(not d[OUTBOX_FIELD] for d in documents)
    assert "good" in sidecar.published
    dead = database.collection(DEAD_LETTERS).documents
    assert [(d["event_id"], d["status"]) for d in dead] == [("poison", 400)]


@pytest.mark.parametrize("status", [503, 500, 429])
async def test_a_sidecar_that_is_away_is_waited_for(status: int) -> None:
    database = MemoryDatabase()
    outbox = Outbox(database, Sidecar({"poison"}, status), 1.0, ServiceEvents())  # type: ignore[arg-type]
    documents = pending(database)
    for _ in range(MAX_PUBLISH_ATTEMPTS + 2):
        with pytest.raises(httpx.HTTPStatusError):
            await relay(outbox, database)
    assert documents[0][OUTBOX_FIELD], "kept: nothing is given up while the sidecar is away"
    assert database.collection(DEAD_LETTERS).documents == []


async def test_published_events_are_pulled_later_and_never_published_twice() -> None:
    database = MemoryDatabase()
    sidecar = Sidecar(set(), 400)
    outbox = Outbox(database, sidecar, 1.0, ServiceEvents())  # type: ignore[arg-type]
    outbox.track("things")
    documents = pending(database)
    poison, good = documents[0][OUTBOX_FIELD][0], documents[1][OUTBOX_FIELD][0]
    outbox._written["things"] = {"a": [poison], "b": [good]}
    assert await outbox.relay_written() == 2
    assert sorted(sidecar.published) == ["good", "poison"]
    # on the broker, recorded as sent; still in their documents until the relay is idle
    assert all(d[OUTBOX_FIELD] for d in documents)
    assert len(database.collection(SENT).documents) == 1
    outbox._written["things"] = {"a": [poison]}  # written again: its array still holds it
    assert await outbox.relay_written() == 0
    assert await outbox.relay_once() == 0  # the sweep does not publish them again either
    assert await outbox.compact_once() == 2  # documents
    assert all(not d[OUTBOX_FIELD] for d in documents)
    assert database.collection(SENT).documents == []
    assert await outbox.compact_once() == 0
    assert sorted(sidecar.published) == ["good", "poison"]


async def test_chunks_left_by_a_previous_run_are_pulled_and_not_published_again() -> None:
    database = MemoryDatabase()
    documents = pending(database)
    first = Outbox(database, Sidecar(set(), 400), 1.0, ServiceEvents())  # type: ignore[arg-type]
    first._written["things"] = {"a": list(documents[0][OUTBOX_FIELD])}
    assert await first.relay_written() == 1
    (stored,) = database.collection(SENT).documents
    assert stored["documents"] == [{"_id": "a", "ids": ["poison"]}]  # ids, not envelopes
    # the process ends before pulling; the next one publishes only what was not sent
    sidecar = Sidecar(set(), 400)
    again = Outbox(database, sidecar, 1.0, ServiceEvents())  # type: ignore[arg-type]
    again.track("things")
    await again._load_sent()
    assert await again.relay_once() == 1 and sidecar.published == ["good"]
    assert await again.compact_once() == 1
    assert all(not d[OUTBOX_FIELD] for d in documents)
    assert database.collection(SENT).documents == []


async def test_enforced_decision_batches_are_deleted_once_published() -> None:
    """Every authorised read adds to ``enforced_decisions``: the collection must hold only what
    is still to be published, not every batch ever written."""
    database = MemoryDatabase()
    sidecar = Sidecar(set(), 400)
    outbox = Outbox(database, sidecar, 1.0, LOGS_DECISIONS)  # type: ignore[arg-type]
    enforcement = EnforcementLog(outbox, "journal")
    for flush in range(5):
        for n in range(3):
            enforcement.record(f"decision-{flush}-{n}", allow=True)
        assert await enforcement.flush() == 3
        assert len(database.collection(ENFORCED).documents) == 1
        assert await outbox.relay_written() == 1
        assert database.collection(ENFORCED).documents == [], "a published batch was kept"
    assert len(sidecar.published) == 5
    assert database.collection(SENT).documents == []  # nothing left to pull either
    # a batch a crash left behind is published by the sweep and deleted too
    database.collection(ENFORCED).documents.append(
        {"_id": "left", OUTBOX_FIELD: [{"id": "late", "topic": "t", "subject": "journal"}]}
    )
    assert await outbox.relay_once() == 1
    assert database.collection(ENFORCED).documents == []


async def test_the_relay_scans_only_at_start_up() -> None:
    database = MemoryDatabase()
    sidecar = Sidecar(set(), 400)
    outbox = Outbox(database, sidecar, 0.01, LOGS_DECISIONS)  # type: ignore[arg-type]
    enforcement = EnforcementLog(outbox, "journal")
    outbox.start()
    try:
        for flush in range(30):
            enforcement.record(f"decision-{flush}", allow=True)
            await enforcement.flush()
            await asyncio.sleep(0.02)  # two sweep intervals
        await asyncio.sleep(0.05)
    finally:
        await outbox.stop()
    assert len(sidecar.published) == 30
    assert database.collection(ENFORCED).documents == []
    assert database.collection(ENFORCED).scans == 1, "the relay scanned beyond its start-up sweep"


async def test_an_event_of_an_undeclared_topic_is_refused_unwritten() -> None:
    database = MemoryDatabase()
    outbox = Outbox(database, Sidecar(set(), 400), 1.0, LOGS_DECISIONS)  # type: ignore[arg-type]
    event = {"id": "e1", "topic": "masterdata.person.changed", "subject": "p1"}
    with pytest.raises(UndeclaredTopic):
        await outbox.save("things", {"_id": "a"}, {"$set": {"v": 1}}, [event], upsert=True)
    with pytest.raises(UndeclaredTopic):
        await outbox.insert_many("things", [({"_id": "b"}, [event])])
    assert database.collection("things").documents == []
