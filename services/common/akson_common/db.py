"""MongoDB access on PyMongo's async API (the successor of motor, end of life 2026-05-14).

Every service talks to MongoDB (production) or FerretDB (local, tests) only through this layer:
typed repositories over pydantic models, indexes declared next to them and created at start-up.
FerretDB v1 has no transactions, change streams or ``$lookup``: keep to single-document atomic
updates, indexes and simple queries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

Document = dict[str, Any]
M = TypeVar("M", bound=BaseModel)

T = TypeVar("T")

__all__ = ["Database", "Document", "DuplicateKeyError", "Page", "Repository", "when_not_busy"]


async def when_not_busy(write: Callable[[], Awaitable[T]], attempts: int = 6) -> T:
    """Run a write, retrying while FerretDB's SQLite backend reports the database locked.

    FerretDB v1 (SQLite) answers SQLITE_BUSY instead of waiting when two writers meet;
    MongoDB never does, so there this is a single call.
    """
    for attempt in range(attempts):
        try:
            return await write()
        except OperationFailure as error:
            if "SQLITE_BUSY" not in str(error) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


class Database:
    """One client and one database per service (a service never reads another's database)."""

    def __init__(self, url: str, name: str, *, timeout_ms: int = 3000) -> None:
        self.client: AsyncMongoClient[Document] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=True
        )
        self.db: AsyncDatabase[Document] = self.client[name]
        self._indexes: dict[str, list[IndexModel]] = {}

    def collection(self, name: str) -> AsyncCollection[Document]:
        return self.db[name]

    def declare_indexes(self, collection: str, indexes: Sequence[IndexModel]) -> None:
        """Indexes a collection needs; :meth:`bootstrap` creates them at start-up."""
        self._indexes.setdefault(collection, []).extend(indexes)

    async def bootstrap(self) -> None:
        """Create every declared index (idempotent)."""
        for name, indexes in self._indexes.items():
            # One index per command: FerretDB v1 panics (and drops the connection) when one
            # createIndexes names two or more indexes that all exist already, i.e. at every
            # restart.
            for index in indexes:
                await self.collection(name).create_indexes([index])

    async def ping(self) -> bool:
        try:
            await self.db.command("ping")
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await self.client.close()


@dataclass(frozen=True)
class Page(Generic[M]):
    items: list[M]
    next_after: str | None


@dataclass
class Repository(Generic[M]):
    """A typed collection: documents in, pydantic models out; ``id_field`` maps to ``_id``."""

    database: Database
    collection_name: str
    model: type[M]
    id_field: str = "id"
    indexes: Sequence[IndexModel] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        self.database.declare_indexes(self.collection_name, self.indexes)

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self.database.collection(self.collection_name)

    def to_document(self, entity: M) -> Document:
        document = entity.model_dump(mode="json")
        document["_id"] = document.pop(self.id_field)
        return document

    def to_model(self, document: Mapping[str, Any]) -> M:
        values = {k: v for k, v in document.items() if not k.startswith("_")}
        values[self.id_field] = document["_id"]
        return self.model.model_validate(values)

    async def get_one_or_none(self, entity_id: str) -> M | None:
        document = await self.collection.find_one({"_id": entity_id})
        return None if document is None else self.to_model(document)

    async def find(
        self, query: Mapping[str, Any], *, limit: int = 100, sort: str | None = None
    ) -> list[M]:
        cursor = self.collection.find(dict(query)).limit(limit)
        if sort:
            cursor = cursor.sort(sort, 1)
        return [self.to_model(document) async for document in cursor]

    async def paginate(
        self, query: Mapping[str, Any], *, limit: int, after: str | None = None
    ) -> Page[M]:
        """Keyset paging on ``_id``: stable under concurrent inserts, no skip scans."""
        selector = dict(query)
        if after is not None:
            selector["_id"] = {"$gt": after}
        cursor = self.collection.find(selector).sort("_id", 1).limit(limit + 1)
        documents = [document async for document in cursor]
        items = [self.to_model(d) for d in documents[:limit]]
        next_after = str(documents[limit - 1]["_id"]) if len(documents) > limit else None
        return Page(items=items, next_after=next_after)

    async def upsert(self, entity: M) -> None:
        document = self.to_document(entity)
        await self.collection.replace_one({"_id": document["_id"]}, document, upsert=True)
