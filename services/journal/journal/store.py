"""One store for every resource type: the current version in ``resources``, earlier versions
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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from akson_common.db import Database, Document, when_not_busy
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
        database.declare_indexes(
            RESOURCES,
            [
                IndexModel([("patient", ASCENDING), ("type", ASCENDING), ("sort_key", DESCENDING)]),
            ],
        )
        database.declare_indexes(VERSIONS, [IndexModel([("resource_id", ASCENDING)])])

    async def insert(self, document: Document, events: list[dict[str, Any]]) -> None:
        await self.outbox.insert_many(RESOURCES, [(document, events)])

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
        await when_not_busy(
            lambda: self.versions.replace_one(
                {"_id": version_key},
                {**kept, "resource_id": previous["_id"]},
                upsert=True,
            )
        )
        return await self.outbox.save(
            RESOURCES,
            {"_id": previous["_id"], "version": previous["version"]},
            {"$set": {**changes, "version": previous["version"] + 1}},
            events,
        )

    async def earlier_versions(self, resource_id: str, below: int) -> list[Document]:
        cursor = self.versions.find({"resource_id": resource_id}).sort("version", DESCENDING)
        return [d async for d in cursor if d["version"] < below]

    async def version(self, resource_id: str, version: int) -> Document | None:
        return await self.versions.find_one({"_id": f"{resource_id}/{version}"})

    async def access_tuples(self, selector: dict[str, Any]) -> Counter[AccessTuple]:
        """How many matching resources share each combination of access attributes."""
        projection = dict.fromkeys(ACCESS_FIELDS, 1)
        counts: Counter[AccessTuple] = Counter()
        async for document in self.current.find(selector, projection):
            counts[access_tuple(document)] += 1
        return counts

    async def page(
        self, selector: dict[str, Any], *, before: str | None, limit: int
    ) -> tuple[list[Document], str | None]:
        """Newest first, keyset on ``sort_key`` (date, then id): stable under inserts."""
        query = dict(selector)
        if before is not None:
            query["sort_key"] = {"$lt": before}
        cursor = (
            self.current.find(query, {OUTBOX_FIELD: 0})
            .sort("sort_key", DESCENDING)
            .limit(limit + 1)
        )
        documents = [d async for d in cursor]
        more = len(documents) > limit
        documents = documents[:limit]
        return documents, (str(documents[-1]["sort_key"]) if more else None)
