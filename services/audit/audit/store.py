"""The append-only, hash-chained decision store (collection ``decisions``).

One document per decision, ``_id`` = OPA's decision id (so a re-sent entry is stored once):
``position``, ``previous_hash``, ``hash``, ``record`` (the kept entry, see ``records``), the
query fields extracted from it, and ``received_at``. Nothing here updates or deletes a decision
(retention pruning, run by an operator, is the only delete: see ``prune``).

Positions are gap-free across concurrent writers (several replicas, each with several uploads
in flight) without transactions (FerretDB v1 has none):

- a unique index on ``position`` lets exactly one writer take each position;
- the chain head (``chain`` collection, document ``head``: last position and hash) tells a
  writer where to continue without sorting the whole collection (FerretDB v1 sorts in memory);
- a writer reads the head, chains its batch after it, inserts the batch *ordered* and advances
  the head with a compare-and-set (only forwards). An insert that hits a taken position means
  another writer got there first (or one crashed before advancing the head): the writer walks
  the stored records forward to the real tail, advances the head and chains the rest again;
- an entry whose decision id is already stored is skipped (OPA re-sends a batch it is unsure of).

Within one process an asyncio lock serialises appends, so contention is only across replicas.
Every ``checkpoint_every`` positions a checkpoint (position, hash) is written to
``checkpoints`` and logged (the log is a second, independent copy).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError

from akson_common.db import Database, Document, when_not_busy
from audit.chain import (
    GENESIS,
    Head,
    Link,
    Report,
    StoredLink,
    extend,
    in_position_order,
    verify,
)
from audit.quarantine import Quarantined, chain_id, quarantined_record, refused_record, screen
from audit.records import QUERY_FIELDS, query_fields, sanitise

log = logging.getLogger("akson.audit.store")

DECISIONS = "decisions"
CHAIN = "chain"
CHECKPOINTS = "checkpoints"
HEAD_ID = "head"
ANCHOR_ID = "anchor"
DUPLICATE_KEY = 11000
MAX_ROUNDS = 50

# Compound (field, position) indexes serve "filter, newest first, keyset paging" on MongoDB.
# (FerretDB v1 pushes equality filters down to PostgreSQL but sorts in memory; see README.)
INDEXED = ("patient", "actor", "hpr", "organisation", "municipality", "emergency", "reasons")


def decision_indexes() -> list[IndexModel]:
    return [
        IndexModel([("position", ASCENDING)], unique=True, name="position_unique"),
        *(IndexModel([(name, ASCENDING), ("position", DESCENDING)]) for name in INDEXED),
        IndexModel([("at", DESCENDING)]),
    ]


# what the snooping signals read of a decision (audit.signals)
SIGNAL_FIELDS = {
    "patient": 1,
    "at": 1,
    "allow": 1,
    "actor_kind": 1,
    "resource_type": 1,
    "hpr": 1,
    "actor": 1,
    "reasons": 1,
    "protected_address": 1,
}


class DecisionStore:
    def __init__(self, database: Database, *, checkpoint_every: int = 1000) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.database = database
        self.checkpoint_every = checkpoint_every
        self.decisions = database.collection(DECISIONS)
        self.chain = database.collection(CHAIN)
        self.checkpoints = database.collection(CHECKPOINTS)
        database.declare_indexes(DECISIONS, decision_indexes())
        self._lock = asyncio.Lock()

    # -- writing -----------------------------------------------------------------------------

    async def append(self, entries: list[dict[str, Any]], new_ids: list[str] | None = None) -> int:
        """Store each entry once, in order, chained; return how many were new (and add their
        decision ids to ``new_ids`` when given). Unstorable entries are chained escaped and
        flagged (see ``quarantine``); the intake also keeps them in quarantine."""
        pending, _ = prepare(entries)
        return await self.append_prepared(pending, new_ids)

    async def append_prepared(
        self,
        pending: list[tuple[str, dict[str, Any]]],
        new_ids: list[str] | None = None,
        refused: list[Quarantined] | None = None,
    ) -> int:
        """Chain ``(chain id, record)`` pairs from :func:`prepare`. A record the database
        refuses (anything but a duplicate) is chained as a minimal quarantine record instead
        and added to ``refused``: one entry never fails the batch."""
        stored = 0
        replaced: set[str] = set()
        async with self._lock:
            # MAX_ROUNDS counts contention (another writer took the position) only: a round
            # that finds decisions stored already drops every one of them in a row and does not
            # count. Counting them failed a re-sent chunk holding more than MAX_ROUNDS stored
            # decisions for ever (OPA gave up waiting for a slow answer, sent the chunk again,
            # and the log stalled)
            contended = 0
            while contended < MAX_ROUNDS:
                if not pending:
                    return stored
                head = await self.head()
                links = extend(head, [record for _, record in pending])
                documents = [
                    self._document(decision_id, link)
                    for (decision_id, _), link in zip(pending, links, strict=True)
                ]
                try:
                    await self._insert(documents)
                except BulkWriteError as error:
                    failures = error.details.get("writeErrors", [])
                    if not failures:
                        raise
                    failed = int(failures[0]["index"])
                    if failed:
                        await self._advance(links[:failed])
                    stored += failed
                    if new_ids is not None:
                        new_ids.extend(decision_id for decision_id, _ in pending[:failed])
                    code = failures[0].get("code")
                    if code != DUPLICATE_KEY:
                        decision_id, record = pending[failed]
                        if decision_id in replaced:
                            raise  # even the minimal record is refused: not the entry's fault
                        replaced.add(decision_id)
                        reason = f"refused by the store (code {code})"
                        log.warning(
                            "decision refused by the store: quarantined", extra={"code": code}
                        )
                        if refused is not None:
                            refused.append(Quarantined(decision_id, reason, record))
                        pending = [
                            (decision_id, refused_record(decision_id, reason)),
                            *pending[failed + 1 :],
                        ]
                        continue
                    conflict = await self.decisions.find_one(
                        {"position": links[failed].position}, {"_id": 1}
                    )
                    if conflict is None:
                        # not the position: the decision id is stored already, and maybe the
                        # ones after it (a re-sent chunk)
                        pending = await self._past_stored(pending[failed + 1 :])
                    else:
                        contended += 1
                        await self._catch_up(links[failed].position - 1)
                        pending = pending[failed:]
                    continue
                await self._advance(links)
                stored += len(links)
                if new_ids is not None:
                    new_ids.extend(decision_id for decision_id, _ in pending)
                pending = []
            raise RuntimeError("could not append to the decision chain (too much contention)")
        return stored

    async def _past_stored(
        self, pending: list[tuple[str, dict[str, Any]]]
    ) -> list[tuple[str, dict[str, Any]]]:
        """``pending`` from its first decision the chain does not hold yet (a lookup by id
        each: FerretDB v1 finds by ``_id`` through the index, an ``$in`` scans)."""
        start = 0
        while start < len(pending) and await self.decisions.find_one(
            {"_id": pending[start][0]}, {"_id": 1}
        ):
            start += 1
        return pending[start:]

    async def _insert(self, documents: list[Document]) -> None:
        await when_not_busy(lambda: self.decisions.insert_many(documents, ordered=True))

    def _document(self, decision_id: str, link: Link) -> Document:
        return {
            "_id": decision_id,
            "position": link.position,
            "previous_hash": link.previous_hash,
            "hash": link.hash,
            "record": link.record,
            **query_fields(link.record),
            "received_at": datetime.now(UTC),
        }

    async def head(self) -> Head:
        document = await self.chain.find_one({"_id": HEAD_ID})
        if document is None:
            return await self.anchor()
        return Head(int(document["position"]), str(document["hash"]))

    async def anchor(self) -> Head:
        """Where the kept chain starts: genesis, or the checkpoint retention pruned up to."""
        document = await self.chain.find_one({"_id": ANCHOR_ID})
        if document is None:
            return Head()
        return Head(int(document["position"]), str(document["hash"]))

    async def _advance(self, links: list[Link]) -> None:
        """Move the head forward to the last of ``links`` (never backwards), then write the
        checkpoints that fall among them."""
        last = links[-1]
        state = {"position": last.position, "hash": last.hash, "at": datetime.now(UTC)}
        try:
            await self.chain.update_one(
                {"_id": HEAD_ID, "position": {"$lt": last.position}}, {"$set": state}, upsert=True
            )
        except DuplicateKeyError:
            pass  # the head exists and is already at or past this link
        for link in links:
            if link.position % self.checkpoint_every == 0:
                await self._checkpoint(link)

    async def _checkpoint(self, link: Link) -> None:
        checkpoint = {
            "_id": link.position,
            "hash": link.hash,
            # the record's own time: retention decides on checkpoints alone
            "record_at": query_fields(link.record)["at"] if link.record else None,
            "at": datetime.now(UTC),
        }
        try:
            await self.checkpoints.insert_one(checkpoint)
        except DuplicateKeyError:
            return
        log.info("audit checkpoint", extra={"position": link.position, "hash": link.hash})

    async def _catch_up(self, known: int) -> None:
        """The head lags behind the stored records (a writer stopped between its insert and
        moving the head): walk forward from ``known`` to the tail. Rare, and each step is a
        lookup by position."""
        position, walked = known, []
        while True:
            document = await self.decisions.find_one(
                {"position": position + 1},
                {"position": 1, "hash": 1, "previous_hash": 1, "record": 1},
            )
            if document is None:
                break
            position += 1
            walked.append(
                Link(
                    position,
                    str(document["previous_hash"]),
                    str(document["hash"]),
                    document.get("record") or {},
                )
            )
        if walked:
            await self._advance(walked)

    # -- reading -----------------------------------------------------------------------------

    async def page(
        self, selector: Mapping[str, Any], *, limit: int, before: int | None = None
    ) -> tuple[list[Document], int | None]:
        """Newest first, keyset paging on position: (documents, the next page's ``before``)."""
        query = dict(selector)
        if before is not None:
            query["position"] = {"$lt": before}
        cursor = self.decisions.find(query, {"_id": 1, "position": 1, "hash": 1, "record": 1})
        documents = [d async for d in cursor.sort("position", DESCENDING).limit(limit + 1)]
        more = len(documents) > limit
        documents = documents[:limit]
        return documents, (int(documents[-1]["position"]) if more and documents else None)

    async def stream(
        self, selector: Mapping[str, Any], *, chunk: int = 1000
    ) -> AsyncIterator[Document]:
        before: int | None = None
        while True:
            documents, before = await self.page(selector, limit=chunk, before=before)
            for document in documents:
                yield document
            if before is None:
                return

    async def one(self, decision_id: str) -> Document | None:
        return await self.decisions.find_one({"_id": decision_id})

    async def access_log(
        self, patient: str, exclude_types: Sequence[str], *, limit: int, before: int | None
    ) -> tuple[list[Document], int | None]:
        """Allowed accesses to ``patient``'s record by others, newest first (as :meth:`page`),
        leaving out ``exclude_types`` (audit data)."""
        selector = {
            "patient": patient,
            "allow": True,
            "actor": {"$ne": patient},
            "resource_type": {"$nin": list(exclude_types)},
        }
        return await self.page(selector, limit=limit, before=before)

    def practitioner_accesses(self, since: datetime, until: datetime) -> AsyncIterator[Document]:
        """Practitioners' allowed accesses in ``[since, until)``, only the fields the snooping
        signals read."""
        selector = {
            "at": {"$gte": since, "$lt": until},
            "allow": True,
            "actor_kind": "practitioner",
        }
        return self.decisions.find(selector, SIGNAL_FIELDS)

    # -- verifying ---------------------------------------------------------------------------

    async def verify(self) -> Report:
        anchor = await self.anchor()
        head_document = await self.chain.find_one({"_id": HEAD_ID})
        head = (
            None
            if head_document is None
            else Head(int(head_document["position"]), str(head_document["hash"]))
        )
        checkpoints = {
            int(c["_id"]): str(c["hash"])
            async for c in self.checkpoints.find({})
            if int(c["_id"]) > anchor.position
        }
        return await verify(
            in_position_order(self._links(anchor.position), anchor.position + 1),
            anchor=anchor,
            head=head,
            checkpoints=checkpoints,
            derive=query_fields,
        )

    async def _links(self, after: int) -> AsyncIterator[StoredLink]:
        # storage order, not sorted: see chain.in_position_order
        selector = {"position": {"$gt": after}} if after else {}
        cursor = self.decisions.find(selector).batch_size(2000)
        async for document in cursor:
            yield StoredLink(
                position=int(document.get("position", -1)),
                previous_hash=str(document.get("previous_hash", "")),
                hash=str(document.get("hash", "")),
                record=document.get("record") or {},
                fields={k: _comparable(document.get(k)) for k in QUERY_FIELDS},
            )

    # -- retention ---------------------------------------------------------------------------

    async def prune(self, older_than: datetime) -> int:
        """Delete whole checkpoint segments from the start whose records are all older than
        ``older_than``; the newest such checkpoint becomes the anchor the chain is verified
        from. Return how many records were deleted."""
        anchor = await self.anchor()
        cut: tuple[int, str] | None = None
        async for checkpoint in self.checkpoints.find({}).sort("_id", ASCENDING):
            position = int(checkpoint["_id"])
            if position <= anchor.position:
                continue
            record_at = _comparable(checkpoint.get("record_at"))
            if record_at is None or record_at >= older_than:
                break
            cut = (position, str(checkpoint["hash"]))
        if cut is None:
            return 0
        position, digest = cut
        # the anchor first: a crash between the two leaves records before the anchor, which
        # verify ignores, never a chain without its starting point
        await self.chain.update_one(
            {"_id": ANCHOR_ID},
            {"$set": {"position": position, "hash": digest, "at": datetime.now(UTC)}},
            upsert=True,
        )
        deleted = await self.decisions.delete_many({"position": {"$lte": position}})
        await self.checkpoints.delete_many({"_id": {"$lt": position}})
        log.info(
            "audit retention pruned", extra={"up_to": position, "deleted": deleted.deleted_count}
        )
        return int(deleted.deleted_count)


def prepare(
    entries: list[dict[str, Any]],
) -> tuple[list[tuple[str, dict[str, Any]]], list[Quarantined]]:
    """Each entry once, as (chain id, kept record), and those that must be quarantined: an
    unstorable record is chained escaped and flagged, its original kept in quarantine."""
    seen: set[str] = set()
    pending: list[tuple[str, dict[str, Any]]] = []
    quarantined: list[Quarantined] = []
    for entry in entries:
        decision_id = str(entry["decision_id"])
        key = chain_id(decision_id)
        if key in seen:
            continue
        seen.add(key)
        record = sanitise(entry)
        reason = screen(record) or (None if key == decision_id else "entry.decision_id")
        if reason is not None:
            quarantined.append(Quarantined(key, reason, record))
            record = quarantined_record(record, reason)
        pending.append((key, record))
    return pending, quarantined


def _comparable(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


__all__ = ["GENESIS", "DecisionStore"]
