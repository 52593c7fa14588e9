"""One store for every resource type: the current version in ``resources``, earlier versions
in ``resource_versions`` and, per patient, an index document in ``patient_index``. Nothing is
ever deleted.

A current document holds the resource and, beside it, the facts the journal searches and
decides on (``type``, ``patient``, ``category``, ``sensitivity``, ``status``, ``date``,
``type_code``, ``sort_key``) and where it was recorded (``author``, ``unit``, ``organisation``,
``municipality``), plus ``version``, ``created_at``, ``updated_at`` and ``changed_by`` (the
writer of this version). Events go into the same document through the outbox.

An update first copies the version it replaces into ``resource_versions`` (idempotent, keyed
``<id>/<version>``) and then swaps the current document only if its version is still the
expected one: a crash in between leaves a spare copy of the still-current version, never a
lost one, and two concurrent writers cannot both win.

Searches and the summary read the patient's index document (one ``_id`` lookup: the
patient's entries with their facts, no content) and then fetch only the page they return, by
``_id``. FerretDB v1 answers any other filter with a scan of the whole collection, so a search
by ``patient`` would cost in proportion to everyone's records. The index is written after the
resource; a crash in between leaves the resource out of searches until its next write, and
the service re-checks every fetched resource's own attributes against the decisions, so a
stale index entry can hide a resource but never show one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from akson_common.db import Database, Document, DuplicateKeyError, when_not_busy
from akson_common.outbox import OUTBOX_FIELD, Outbox

RESOURCES = "resources"
VERSIONS = "resource_versions"
PATIENT_INDEX = "patient_index"
# The attributes an access decision depends on: one decision per distinct combination.
ACCESS_FIELDS = (
    "type",
    "category",
    "sensitivity",
    "unit",
    "organisation",
    "municipality",
    "author",
    "withheld",
)
# the facts an index entry keeps (never content)
INDEXED = (*ACCESS_FIELDS, "status", "date", "type_code", "sort_key", "version")
AccessTuple = tuple[Any, ...]


def access_tuple(document: Mapping[str, Any]) -> AccessTuple:
    return tuple(document.get(name) for name in ACCESS_FIELDS)


def tuple_selector(values: AccessTuple) -> dict[str, Any]:
    return dict(zip(ACCESS_FIELDS, values, strict=True))


def index_entry(document: Mapping[str, Any]) -> str:
    """An index entry as one compact JSON array: FerretDB v1 decodes a nested field at a time,
    so 200 entries as objects took ~60 ms to read back, as strings a fraction of that."""
    return json.dumps([document.get(name) for name in INDEXED], separators=(",", ":"))


def read_entry(resource_id: str, entry: str) -> dict[str, Any]:
    return {**dict(zip(INDEXED, json.loads(entry), strict=True)), "id": resource_id}


class ResourceStore:
    def __init__(self, database: Database, outbox: Outbox) -> None:
        self.outbox = outbox
        self.current = database.collection(RESOURCES)
        self.versions = database.collection(VERSIONS)
        self.index = database.collection(PATIENT_INDEX)
        outbox.track(RESOURCES)
        # for MongoDB in production (FerretDB v1 reads by _id only, see above)
        database.declare_indexes(
            RESOURCES,
            [
                IndexModel([("patient", ASCENDING), ("type", ASCENDING), ("sort_key", DESCENDING)]),
            ],
        )

    async def insert(self, document: Document, events: list[dict[str, Any]]) -> None:
        await self.outbox.insert_many(RESOURCES, [(document, events)])
        await self._index(document)

    async def _index(self, document: Mapping[str, Any]) -> None:
        entry = index_entry(document)
        await when_not_busy(
            lambda: self.index.update_one(
                {"_id": document["patient"]},
                {"$set": {f"entries.{document['_id']}": entry}},
                upsert=True,
            )
        )

    async def entries(self, patient: str) -> list[dict[str, Any]]:
        """The patient's index entries (``id`` plus :data:`INDEXED`), in no order."""
        found = await self.index.find_one({"_id": patient})
        entries = (found or {}).get("entries") or {}
        return [read_entry(resource_id, entry) for resource_id, entry in entries.items()]

    async def fetch(self, resource_ids: list[str]) -> list[Document]:
        """Current documents by id, in the order asked, skipping any not found."""
        found = await asyncio.gather(*(self.get(resource_id) for resource_id in resource_ids))
        return [document for document in found if document is not None]

    async def get(self, resource_id: str) -> Document | None:
        return await self.current.find_one({"_id": resource_id}, {OUTBOX_FIELD: 0})

    async def replace(
        self,
        previous: Document,
        changes: dict[str, Any],
        events: list[dict[str, Any]],
    ) -> Document | None:
        """Make ``changes`` the next version unless someone else got there first (None)."""
        kept = {k: v for k, v in previous.items() if k not in ("_id", OUTBOX_FIELD)}
        version_key = f"{previous['_id']}/{previous['version']}"
        try:
            await when_not_busy(
                lambda: self.versions.insert_one(
                    {**kept, "_id": version_key, "resource_id": previous["_id"]}
                )
            )
        except DuplicateKeyError:
            pass  # copied before, by an attempt that lost the race or crashed: same content
        saved = await self.outbox.save(
            RESOURCES,
            {"_id": previous["_id"], "version": previous["version"]},
            {"$set": {**changes, "version": previous["version"] + 1}},
            events,
        )
        if saved is not None:
            await self._index(saved)
        return saved

    async def earlier_versions(self, resource_id: str, below: int) -> list[Document]:
        """Versions ``below - 1`` down to 1, each by ``_id`` (no scan)."""
        found = await asyncio.gather(
            *(self.version(resource_id, version) for version in range(below - 1, 0, -1))
        )
        return [document for document in found if document is not None]

    async def version(self, resource_id: str, version: int) -> Document | None:
        return await self.versions.find_one({"_id": f"{resource_id}/{version}"})
