"""One store for every resource type: the current version in ``resources`` and earlier versions
in ``resource_versions``. Nothing is ever deleted.

A current document holds the resource and, beside it, the facts the journal searches and
decides on (``type``, ``patient``, ``category``, ``sensitivity``, ``status``, ``date``,
``type_code``, ``sort_key``) and where it was recorded (``author``, ``unit``, ``organisation``,
``municipality``), plus ``version``, ``created_at``, ``updated_at`` and ``changed_by`` (the
writer of this version). Events go into the same document through the outbox.

An update first copies the version it replaces into ``resource_versions`` (idempotent, keyed
``<id>/<version>``) and then swaps the current document only if its version is still the
expected one: a crash in between leaves a spare copy of the still-current version, never a
lost one, and two concurrent writers cannot both win.

Searches and the summary read the patient's current documents of the asked type in ONE query
on ``patient`` (and ``type``): MongoDB serves it from the compound index declared below,
FerretDB v1 on PostgreSQL pushes both equalities down to the GIN twins of that index (the
local runner's trigger). Until issue 15 they read a per-patient index document and then
fetched each hit by ``_id`` — on FerretDB v1 every command costs ~1 ms of CPU whatever it
returns, so a page of ten cost twelve commands; the index document also had to be rewritten
(in full: FerretDB v1 updates read and write the whole document) on every write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from akson_common.db import Database, Document, DuplicateKeyError, when_not_busy
from akson_common.outbox import OUTBOX_FIELD, Outbox

RESOURCES = "resources"
VERSIONS = "resource_versions"
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
AccessTuple = tuple[Any, ...]


def access_tuple(document: Mapping[str, Any]) -> AccessTuple:
    return tuple(document.get(name) for name in ACCESS_FIELDS)


def tuple_selector(values: AccessTuple) -> dict[str, Any]:
    return dict(zip(ACCESS_FIELDS, values, strict=True))


class ResourceStore:
    def __init__(self, database: Database, outbox: Outbox) -> None:
        self.outbox = outbox
        self.current = database.collection(RESOURCES)
        self.versions = database.collection(VERSIONS)
        outbox.track(RESOURCES)
        # searches by patient (and type): MongoDB's index; FerretDB v1 uses its GIN twins
        database.declare_indexes(
            RESOURCES,
            [
                IndexModel([("patient", ASCENDING), ("type", ASCENDING), ("sort_key", DESCENDING)]),
            ],
        )

    async def insert(self, document: Document, events: list[dict[str, Any]]) -> bool:
        """Store a new resource with its events; True (and nothing written) if its id existed."""
        return bool(await self.outbox.insert_many(RESOURCES, [(document, events)]))

    async def of_patient(self, patient: str, resource_type: str | None = None) -> list[Document]:
        """The patient's current documents (of ``resource_type``), in no order, without their
        pending events; each with ``id`` = its ``_id``."""
        selector = (
            {"patient": patient}
            if resource_type is None
            else {
                "patient": patient,
                "type": resource_type,
            }
        )
        cursor = self.current.find(selector, {OUTBOX_FIELD: 0})
        return [{**document, "id": document["_id"]} async for document in cursor]

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
        return saved

    async def earlier_versions(self, resource_id: str, below: int) -> list[Document]:
        """Versions ``below - 1`` down to 1, each by ``_id`` (no scan)."""
        found = await asyncio.gather(
            *(self.version(resource_id, version) for version in range(below - 1, 0, -1))
        )
        return [document for document in found if document is not None]

    async def version(self, resource_id: str, version: int) -> Document | None:
        return await self.versions.find_one({"_id": f"{resource_id}/{version}"})
