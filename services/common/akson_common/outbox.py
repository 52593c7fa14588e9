"""Transactional outbox without multi-document transactions (FerretDB has none).

A state change and the events it causes are written in ONE single-document update: the events
go into the document's own ``_outbox`` array. A relay publishes pending entries through the
sidecar and then pulls them from the array. A crash anywhere in between loses nothing: at worst
an event is published twice with the same CloudEvent id, and consumers dedupe on that id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from pymongo import DeleteOne, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from akson_common.background import Background
from akson_common.db import (
    Database,
    Document,
    WriteOperation,
    bulk_write_in_rounds,
    when_not_busy,
)
from akson_common.events import EventPublisher, ServiceEvents

log = logging.getLogger("akson.outbox")
_tracer = trace.get_tracer("akson.outbox")

OUTBOX_FIELD = "_outbox"
DUPLICATE_KEY = 11000
RELAY_CHUNK = 200
RELAY_CONCURRENCY = 16
# An event the sidecar refuses as such (a 4xx other than timeout/too-many) is a poison pill: it
# is published again at most this many times, then moved to ``outbox_dead_letters`` so that the
# events behind it go out. The sidecar or broker being away (5xx, no connection) is not.
MAX_PUBLISH_ATTEMPTS = 3
DEAD_LETTERS = "outbox_dead_letters"
# Published events that are still to be pulled from their documents, one document per relay
# chunk (see Outbox.compact_once)
SENT = "outbox_sent"
# The full sweep (a scan of every tracked collection: FerretDB v1 pushes no ``$exists`` down)
# runs at start-up, after a failure, and otherwise this rarely: it is for what another process
# left behind (a replica that crashed and was not restarted); this process relays what it
# wrote from memory.
SAFETY_SWEEP_SECONDS = 600.0
# Pulling published events from their documents is housekeeping, not the pipeline: at most this
# many documents a second (each pull is an update, ~1 ms of FerretDB and PostgreSQL CPU), so
# that a large import's pulls do not compete with the consumers draining it. What waits is
# recorded in ``outbox_sent`` and never published again.
COMPACT_DOCUMENTS_PER_SECOND = 200.0
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


class Outbox(Background):
    def __init__(
        self,
        database: Database,
        publisher: EventPublisher,
        sweep_seconds: float,
        events: ServiceEvents,
    ) -> None:
        self.database = database
        self.publisher = publisher
        self.sweep_seconds = sweep_seconds
        # what the service declares it publishes: an event of another topic is refused unwritten
        self.events = events
        self.collections: list[str] = []
        # collections whose documents only carry events: deleted once their events are out
        self._carriers: set[str] = set()
        # documents written by this process with events not yet relayed, with those events as
        # written (the document's whole pending array): relayed from memory, so the relay
        # reads nothing back (FerretDB v1 scans the collection for an ``_id`` ``$in`` and for
        # the pending filter); the full sweep is for what a crash left behind
        self._written: dict[str, dict[Any, list[dict[str, Any]]]] = {}
        self._wake = asyncio.Event()
        self.name = "outbox-relay"
        self._refusals: dict[str, int] = {}
        # Pulling published events from their documents is an update per document, the
        # costliest statement in FerretDB v1 (a query and a write, ~2 ms): the relay records
        # what it published in one ``outbox_sent`` document per chunk instead, and pulls them
        # when it has nothing to publish. ``_sent_ids``: those events, never published twice.
        # chunk id, and the chunk itself while this process has it (None: read it back)
        self._to_compact: deque[tuple[Any, Document | None]] = deque()
        self._sent_ids: set[str] = set()
        self._markers_loaded = False

    def track(self, collection: str, *, keep: bool = True) -> None:
        """Declare a collection whose documents may carry pending events. ``keep=False``: its
        documents exist only to carry their events (enforced decision batches) and are deleted,
        each by its ``_id``, once those are on the broker; otherwise they are kept and only
        their published events are pulled."""
        if not keep:
            self._carriers.add(collection)
        if collection not in self.collections:
            self.collections.append(collection)
            self.database.declare_indexes(
                collection, [IndexModel([(f"{OUTBOX_FIELD}.id", 1)], sparse=True)]
            )

    async def save(
        self,
        collection: str,
        selector: Mapping[str, Any],
        update: Mapping[str, Any],
        events: list[dict[str, Any]],
        *,
        upsert: bool = False,
    ) -> Document | None:
        """Apply ``update`` and append ``events`` to the same document, atomically."""
        self.events.published(events)
        target = self.database.collection(collection)
        result = await when_not_busy(
            lambda: target.find_one_and_update(
                dict(selector), _with_events(update, events), upsert=upsert, return_document=True
            )
        )
        if events and result is not None:
            pending = list(result.get(OUTBOX_FIELD) or events)
            self._written.setdefault(collection, {})[result["_id"]] = pending
        self._wake.set()
        return result

    async def insert_many(
        self, collection: str, documents: Sequence[tuple[Document, list[dict[str, Any]]]]
    ) -> set[Any]:
        """Insert new documents, each with its own events; return the ids that already existed.

        Inserts, not upserts: FerretDB v1 (SQLite) finds an update's or upsert's target by
        scanning the collection, while a batch insert costs next to nothing. Each document and
        its events are still one write; the batch as a whole is not atomic (no transactions in
        FerretDB v1), which is fine for idempotent imports. The caller updates the ids returned.
        """
        if not documents:
            return set()
        for _, events in documents:
            self.events.published(events)
        batch = [{**document, OUTBOX_FIELD: events} for document, events in documents]
        existed: set[Any] = set()
        try:
            target = self.database.collection(collection)
            await when_not_busy(lambda: target.insert_many(batch, ordered=False))
        except BulkWriteError as error:
            failures = error.details.get("writeErrors", [])
            if any(failure.get("code") != DUPLICATE_KEY for failure in failures):
                raise
            existed = {batch[failure["index"]]["_id"] for failure in failures}
        written = self._written.setdefault(collection, {})
        for document, events in documents:
            if events and document["_id"] not in existed:
                written[document["_id"]] = list(events)
        self._wake.set()
        return existed

    async def relay_written(self) -> int:
        """Publish the pending events of the documents this process wrote since the last relay."""
        published = 0
        for name, written in list(self._written.items()):
            if not written:
                continue
            chosen = dict(itertools.islice(written.items(), RELAY_CHUNK))
            for key in chosen:
                del written[key]
            collection = self.database.collection(name)
            try:
                documents = [
                    {"_id": key, OUTBOX_FIELD: unsent}
                    for key, events in chosen.items()
                    if (unsent := [e for e in events if str(e.get("id")) not in self._sent_ids])
                ]
                published += await self._relay_chunk(collection, documents, defer_pull=True)
            except Exception:
                for key, events in chosen.items():  # try again on the next round
                    written.setdefault(key, events)
                raise
        return published

    async def relay_once(self) -> int:
        """Publish every pending event once; return how many were published.

        Published entries are removed with exact-match ``$pullAll`` updates by ``_id``, one bulk
        write per chunk (see :func:`_pull`). (A ``$pull`` with a query condition would silently
        do nothing in FerretDB v1; exact values work.)
        """
        published = 0
        for name in self.collections:
            collection = self.database.collection(name)
            cursor = collection.find({f"{OUTBOX_FIELD}.id": {"$exists": True}}, {OUTBOX_FIELD: 1})
            chunk: list[Document] = []
            written = self._written.setdefault(name, {})
            known = set(written)
            async for document in cursor:
                if document["_id"] in written and document["_id"] not in known:
                    # written by this process since the sweep started: relay_written has it
                    # (publishing it here too made a duplicate, and kept the sweep from backing
                    # off during an import: a scan of the whole collection every interval)
                    continue
                unsent = [
                    e
                    for e in document.get(OUTBOX_FIELD, [])
                    if str(e.get("id")) not in self._sent_ids
                ]
                if not unsent:
                    continue  # published, its pull is queued
                chunk.append({**document, OUTBOX_FIELD: unsent})
                if len(chunk) >= RELAY_CHUNK:
                    published += await self._relay_chunk(collection, chunk)
                    chunk = []
            published += await self._relay_chunk(collection, chunk)
        return published

    async def _relay_chunk(
        self,
        collection: AsyncCollection[Document],
        documents: list[Document],
        *,
        defer_pull: bool = False,
    ) -> int:
        """Publish a chunk's events with the sidecar's bulk publish API, then pull them.

        A bulk has no order, so the events go out in rounds: round n holds the n-th pending
        event of each subject (a patient, a directive...), one bulk per topic, and round n+1
        starts when round n is on the broker; one subject's events stay in order. An event the
        bulk did not take is published on its own (a refusal then counts towards the poison
        limit). One publish per event capped a bulk import's drain at a few dozen events per
        second; a bulk carries a whole round.
        """
        by_subject: dict[str, list[dict[str, Any]]] = {}
        for document in documents:
            for envelope in document.get(OUTBOX_FIELD, []):
                by_subject.setdefault(str(envelope.get("subject", "")), []).append(envelope)
        done: list[dict[str, Any]] = []
        for depth in range(max((len(group) for group in by_subject.values()), default=0)):
            by_topic: dict[str, list[dict[str, Any]]] = {}
            for group in by_subject.values():
                if depth < len(group):
                    by_topic.setdefault(str(group[depth].get("topic")), []).append(group[depth])
            # all or nothing for the pull: if one publish fails, the chunk stays pending and is
            # published again on the next sweep (consumers dedupe on the event id)
            await asyncio.gather(
                *(
                    self._publish_round(collection, topic, round_)
                    for topic, round_ in by_topic.items()
                )
            )
            done.extend(envelope for round_ in by_topic.values() for envelope in round_)
        if not done:
            return 0
        if collection.name in self._carriers:
            # every event of the chunk is out (or dead-lettered): the carriers go, one delete
            # by _id each (a filter on anything else scans in FerretDB v1)
            deletes = [(d["_id"], DeleteOne({"_id": d["_id"]})) for d in documents]
            await bulk_write_in_rounds(collection, deletes)
            return len(done)
        if not defer_pull:
            return await _pull(collection, documents, done)
        published = {id(envelope) for envelope in done}
        sent = [
            {"_id": d["_id"], "sent": [e for e in d.get(OUTBOX_FIELD, []) if id(e) in published]}
            for d in documents
        ]
        marker = {"_id": uuid.uuid4().hex, "collection": collection.name, "documents": sent}
        # stored with event ids only (the envelopes are in memory, and in their documents)
        stored = [{"_id": d["_id"], "ids": [str(e.get("id")) for e in d["sent"]]} for d in sent]
        await self.database.collection(SENT).insert_one(
            {**marker, "documents": stored, "at": datetime.now(UTC)}
        )
        self._to_compact.append((marker["_id"], marker))
        self._sent_ids.update(str(envelope.get("id")) for envelope in done)
        return len(done)

    async def compact_once(self) -> int:
        """Pull the events of one ``outbox_sent`` chunk from their documents, then forget the
        chunk; how many documents that took (0: there was nothing to compact)."""
        if not self._markers_loaded:
            # chunks a previous run published but did not pull (read once: a handful)
            known = {marker_id for marker_id, _ in self._to_compact}
            async for marker in self.database.collection(SENT).find({}, {"_id": 1}):
                if marker["_id"] not in known:
                    self._to_compact.append((marker["_id"], None))
            self._markers_loaded = True
        if not self._to_compact:
            return 0
        marker_id, chunk = self._to_compact[0]
        markers = self.database.collection(SENT)
        if chunk is None:
            chunk = await self._stored_chunk(marker_id)
        pulled = 1
        if chunk is not None:
            documents = [{"_id": d["_id"], OUTBOX_FIELD: d["sent"]} for d in chunk["documents"]]
            envelopes = [e for d in documents for e in d[OUTBOX_FIELD]]
            await _pull(self.database.collection(chunk["collection"]), documents, envelopes)
            await markers.delete_one({"_id": marker_id})
            self._sent_ids.difference_update(str(e.get("id")) for e in envelopes)
            pulled = max(1, len(documents))
        self._to_compact.popleft()
        return pulled

    async def _stored_chunk(self, marker_id: Any) -> Document | None:
        """A chunk recorded by a previous run, with its envelopes as its documents hold them
        (each read by ``_id``: this is the restart path)."""
        marker = await self.database.collection(SENT).find_one({"_id": marker_id})
        if marker is None:
            return None
        target = self.database.collection(marker["collection"])
        documents = []
        for stored in marker.get("documents", []):
            ids = set(_sent_ids(stored))
            document = await target.find_one({"_id": stored["_id"]}, {OUTBOX_FIELD: 1})
            held = (document or {}).get(OUTBOX_FIELD) or []
            sent = [e for e in held if str(e.get("id")) in ids]
            documents.append({"_id": stored["_id"], "sent": sent})
        return {**marker, "documents": documents}

    async def _load_sent(self) -> None:
        """The events of chunks published but not yet pulled (by a previous run): never
        published again by the sweep."""
        async for marker in self.database.collection(SENT).find({}):
            for document in marker.get("documents", []):
                self._sent_ids.update(_sent_ids(document))

    async def _publish_round(
        self, collection: AsyncCollection[Document], topic: str, envelopes: list[dict[str, Any]]
    ) -> None:
        with _tracer.start_as_current_span(
            f"publish {topic}",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.batch.message_count": len(envelopes)},
        ):
            refused = await self.publisher.publish_bulk(topic, envelopes)
        limit = asyncio.Semaphore(RELAY_CONCURRENCY)

        async def one(envelope: dict[str, Any]) -> None:
            async with limit:
                try:
                    await self._publish(envelope)
                except httpx.HTTPStatusError as error:
                    status = error.response.status_code
                    if not await self._given_up(collection.name, envelope, status):
                        raise

        await asyncio.gather(*(one(e) for e in envelopes if str(e.get("id")) in refused))

    async def _given_up(self, collection: str, envelope: dict[str, Any], status: int) -> bool:
        """False (the chunk stays pending) until a refused event has had its attempts; then
        it is kept in the dead letters and the chunk goes on without it."""
        if status < 400 or status >= 500 or status in _TRANSIENT_STATUSES:
            return False
        event_id = str(envelope.get("id", ""))
        attempts = self._refusals.get(event_id, 0) + 1
        self._refusals[event_id] = attempts
        if attempts < MAX_PUBLISH_ATTEMPTS:
            return False
        self._refusals.pop(event_id, None)
        await self.database.collection(DEAD_LETTERS).insert_one(
            {
                "event_id": event_id,
                "topic": envelope.get("topic"),
                "collection": collection,
                "status": status,
                "envelope": envelope,
                "at": datetime.now(UTC),
            }
        )
        log.warning(
            "event refused by the sidecar: dead-lettered",
            extra={"topic": envelope.get("topic"), "event_id": event_id, "status": status},
        )
        return True

    async def _publish(self, envelope: dict[str, Any]) -> None:
        # Continue the trace of the request that wrote the event, not the relay's own.
        carrier = {k: envelope[k] for k in ("traceparent", "tracestate") if k in envelope}
        with _tracer.start_as_current_span(
            f"publish {envelope.get('topic')}",
            context=propagate.extract(carrier),
            kind=SpanKind.PRODUCER,
            attributes={"messaging.message.id": envelope["id"]},
        ):
            await self.publisher.publish(envelope)

    async def _run(self) -> None:
        # Woken by a write: relay what this process wrote, from memory. The full sweep (which
        # scans every tracked collection) runs at start-up and after a failure, again every
        # sweep interval while it finds something, otherwise every SAFETY_SWEEP_SECONDS.
        # Published events are pulled from their documents when nothing waits to be published.
        full_every = self.sweep_seconds
        last_full = -float("inf")
        loaded = False
        while True:
            if not self._to_compact:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.sweep_seconds)
            self._wake.clear()
            try:
                if not loaded:
                    await self._load_sent()
                    loaded = True
                while any(self._written.values()):
                    await self.relay_written()
                while not self._wake.is_set() and (pulled := await self.compact_once()):
                    # paced (a write that comes meanwhile is relayed first)
                    with contextlib.suppress(TimeoutError):
                        pause = pulled / COMPACT_DOCUMENTS_PER_SECOND
                        await asyncio.wait_for(self._wake.wait(), timeout=pause)
                # the sweep (for what a crash left behind) once the pulls are done: until then
                # every published document still looks pending to it
                due = asyncio.get_running_loop().time() - last_full >= full_every
                if due and not self._to_compact:
                    found = await self.relay_once()
                    last_full = asyncio.get_running_loop().time()
                    # found something: more may be left behind, look again soon
                    full_every = SAFETY_SWEEP_SECONDS if found == 0 else self.sweep_seconds
            except Exception as error:
                # The sidecar or broker is away: keep the events and try again shortly.
                log.warning(
                    "outbox relay failed, will retry", extra={"error": type(error).__name__}
                )
                full_every, last_full = self.sweep_seconds, -float("inf")
                await asyncio.sleep(self.sweep_seconds)


def _sent_ids(stored: Document) -> list[str]:
    """The event ids of one document of a stored chunk (earlier chunks held the envelopes)."""
    if "ids" in stored:
        return [str(event_id) for event_id in stored["ids"]]
    return [str(e.get("id")) for e in stored.get("sent", [])]


def _with_events(update: Mapping[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    operations: dict[str, Any] = {k: dict(v) for k, v in update.items()}
    if events:
        operations.setdefault("$push", {})[OUTBOX_FIELD] = {"$each": events}
    return operations


async def _pull(
    collection: AsyncCollection[Document],
    documents: list[Document],
    envelopes: list[dict[str, Any]],
) -> int:
    """Remove the published ``envelopes`` from their documents: one exact-match ``$pullAll``
    per document by ``_id`` (an ``_id`` ``$in`` scans in FerretDB v1), in small bulk writes."""
    published = {id(envelope) for envelope in envelopes}
    operations: list[tuple[Any, WriteOperation]] = []
    for document in documents:
        sent = [e for e in document.get(OUTBOX_FIELD, []) if id(e) in published]
        if sent:
            update = UpdateOne({"_id": document["_id"]}, {"$pullAll": {OUTBOX_FIELD: sent}})
            operations.append((document["_id"], update))
    await bulk_write_in_rounds(collection, operations)
    return len(envelopes)
