"""MongoDB access on PyMongo's async API (the successor of motor, end of life 2026-05-14).

Every service talks to MongoDB (production) or FerretDB (local, tests) only through this layer:
typed repositories over pydantic models, indexes declared next to them and created at start-up.
FerretDB v1 has no transactions, change streams or ``$lookup``: keep to single-document atomic
updates, indexes and simple queries.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel
from pymongo import AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
from pymongo.operations import DeleteOne, ReplaceOne, UpdateOne

Document = dict[str, Any]
M = TypeVar("M", bound=BaseModel)

T = TypeVar("T")

__all__ = [
    "Database",
    "Document",
    "DuplicateKeyError",
    "Page",
    "Repository",
    "bulk_write_in_rounds",
    "insert_new",
    "insert_or_write",
    "rounds",
    "when_not_busy",
]

DUPLICATE_KEY = 11000
WriteOperation = UpdateOne | ReplaceOne[Document] | DeleteOne
# FerretDB v1 keeps the query of every statement of an update command open (one PostgreSQL
# connection each) until the whole command ends (``defer`` in its loop, handler/msg_update.go):
# a bulk write of 50 statements takes its whole pool (``pool_max_conns``, 50) and deadlocks it,
# every client included. Measured: an outbox pull of 200 documents left 49 done and FerretDB
# stuck.
# No command carries more than this many statements, and one process sends one such command at
# a time (``_bulk_commands``): at most 4 connections per service are held that way, 24 over the
# six services, well under the pool, with room for every other client.
BULK_WRITE_STATEMENTS = 4
_bulk_commands = asyncio.Semaphore(1)


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


def rounds(items: Sequence[T], key: Callable[[T], Any]) -> list[list[T]]:
    """``items`` split into rounds that never hold two items with the same key: the n-th item of
    a key goes into round n, so applying the rounds one after the other keeps each key's order
    while everything in one round can be applied at once (a bulk write has no order)."""
    split: list[list[T]] = []
    seen: dict[Any, int] = {}
    for item in items:
        n = seen.get(key(item), 0)
        seen[key(item)] = n + 1
        if n == len(split):
            split.append([])
        split[n].append(item)
    return split


async def insert_new(collection: AsyncCollection[Document], documents: list[Document]) -> set[Any]:
    """Insert ``documents`` in one unordered batch; return the ``_id`` of those that existed
    already (every other failure is raised)."""
    if not documents:
        return set()
    try:
        await when_not_busy(lambda: collection.insert_many(documents, ordered=False))
    except BulkWriteError as error:
        failures = error.details.get("writeErrors", [])
        if any(failure.get("code") != DUPLICATE_KEY for failure in failures):
            raise
        return {documents[failure["index"]]["_id"] for failure in failures}
    return set()


async def bulk_write_in_rounds(
    collection: AsyncCollection[Document],
    operations: Sequence[tuple[Any, WriteOperation]],
    *,
    duplicates_expected: bool = False,
) -> None:
    """Apply ``(document key, operation)`` pairs in rounds (:func:`rounds`, each document's
    operations in order), each round in unordered ``bulk_write`` commands of at most
    :data:`BULK_WRITE_STATEMENTS` statements. ``duplicates_expected``: an upsert whose filter
    did not match an existing document (a version guard) is no error."""
    for batch in rounds(operations, key=lambda pair: pair[0]):
        for start in range(0, len(batch), BULK_WRITE_STATEMENTS):
            requests = [operation for _, operation in batch[start : start + BULK_WRITE_STATEMENTS]]
            try:
                async with _bulk_commands:
                    await when_not_busy(lambda r=requests: collection.bulk_write(r, ordered=False))  # type: ignore[misc]
            except BulkWriteError as error:
                failures = error.details.get("writeErrors", [])
                if not duplicates_expected or any(
                    failure.get("code") != DUPLICATE_KEY for failure in failures
                ):
                    raise


async def insert_or_write(
    collection: AsyncCollection[Document],
    changes: Sequence[tuple[Any, Document, WriteOperation]],
) -> None:
    """``(key, the document if new, the write if it exists)`` per change, in rounds: the new
    documents of a round in one ``insert_many``, the writes only for those that existed. An
    import creates almost every projection document, and a batch insert is one statement
    where every update is a query and a write."""
    for batch in rounds(changes, key=lambda change: change[0]):
        existed = await insert_new(collection, [document for _, document, _ in batch])
        await bulk_write_in_rounds(
            collection,
            [(key, write) for key, document, write in batch if document["_id"] in existed],
        )


class WriteLocks:
    """Serialises one process's writes that could touch the same document.

    FerretDB v1 applies an update as read, modify in Go, write back, without locking the row:
    two concurrent updates of one document lose one of them (measured: 200 concurrent
    ``$push`` to one document kept 27). MongoDB applies each single-document update atomically.
    So writes naming one document by ``_id`` take that document's lock (different documents
    still run in parallel) and any other write takes the whole collection, exclusively.
    Locally every service runs as one process, which makes this enough; with MongoDB it can be
    switched off (``serialise_writes=False``).
    """

    def __init__(self) -> None:
        self._state = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0
        self._documents: dict[Any, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def document(self, key: Any) -> AsyncIterator[None]:
        async with self._state:
            await self._state.wait_for(lambda: not self._exclusive and not self._exclusive_waiting)
            self._shared += 1
            lock, users = self._documents.get(key, (asyncio.Lock(), 0))
            self._documents[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            async with self._state:
                lock, users = self._documents[key]
                if users == 1:
                    del self._documents[key]
                else:
                    self._documents[key] = (lock, users - 1)
                self._shared -= 1
                self._state.notify_all()

    @asynccontextmanager
    async def everything(self) -> AsyncIterator[None]:
        async with self._state:
            self._exclusive_waiting += 1
            try:
                await self._state.wait_for(lambda: not self._exclusive and not self._shared)
            finally:
                self._exclusive_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            async with self._state:
                self._exclusive = False
                self._state.notify_all()

    def around(self, selector: Any) -> AbstractAsyncContextManager[None]:
        key = selector.get("_id") if isinstance(selector, Mapping) else None
        if key is not None and not isinstance(key, Mapping):
            return self.document(key)
        return self.everything()


class SerialisedCollection(AsyncCollection[Document]):
    """A collection whose updates, replacements and deletes go through :class:`WriteLocks`
    (inserts need none: a new ``_id`` meets no concurrent writer)."""

    def __init__(self, database: AsyncDatabase[Document], name: str, locks: WriteLocks) -> None:
        super().__init__(database, name)
        self._locks = locks

    async def update_one(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._locks.around(filter):
            return await super().update_one(filter, *args, **kwargs)

    async def update_many(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._locks.everything():
            return await super().update_many(filter, *args, **kwargs)

    async def replace_one(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._locks.around(filter):
            return await super().replace_one(filter, *args, **kwargs)

    async def find_one_and_update(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._locks.around(filter):
            return await super().find_one_and_update(filter, *args, **kwargs)

    async def find_one_and_replace(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._locks.around(filter):
            return await super().find_one_and_replace(filter, *args, **kwargs)

    async def find_one_and_delete(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._locks.around(filter):
            return await super().find_one_and_delete(filter, *args, **kwargs)

    async def delete_one(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._locks.around(filter):
            return await super().delete_one(filter, *args, **kwargs)

    async def delete_many(self, filter: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._locks.everything():
            return await super().delete_many(filter, *args, **kwargs)

    async def bulk_write(self, requests: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._locks.everything():
            return await super().bulk_write(requests, *args, **kwargs)


class Database:
    """One client and one database per service (a service never reads another's database)."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        timeout_ms: int = 3000,
        serialise_writes: bool = True,
        max_pool_size: int = 100,
    ) -> None:
        self.client: AsyncMongoClient[Document] = AsyncMongoClient(
            url,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            tz_aware=True,
            maxPoolSize=max_pool_size,
        )
        self.db: AsyncDatabase[Document] = self.client[name]
        self._indexes: dict[str, list[IndexModel]] = {}
        self.serialise_writes = serialise_writes
        self._locks: dict[str, WriteLocks] = {}

    def collection(self, name: str) -> AsyncCollection[Document]:
        if not self.serialise_writes:
            return self.db[name]
        return SerialisedCollection(self.db, name, self._locks.setdefault(name, WriteLocks()))

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
    """A typed collection: documents in, pydantic models out; ``id_field`` maps to ``_id``.

    ``dump``: how a model becomes a document; ``"json"`` (dates as ISO strings, the default) or
    ``"python"`` (dates as BSON dates: what a TTL index or a date range query needs)."""

    database: Database
    collection_name: str
    model: type[M]
    id_field: str = "id"
    indexes: Sequence[IndexModel] = field(default_factory=tuple)
    dump: Literal["json", "python"] = "json"

    def __post_init__(self) -> None:
        self.database.declare_indexes(self.collection_name, self.indexes)

    @property
    def collection(self) -> AsyncCollection[Document]:
        return self.database.collection(self.collection_name)

    def to_document(self, entity: M) -> Document:
        document = entity.model_dump(mode=self.dump)
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

    async def insert_new(self, entities: Sequence[M]) -> int:
        """Insert the entities not stored yet, leaving stored ones (by id) as they are: how a
        projection with deterministic ids stays idempotent. Returns how many were new."""
        documents = [self.to_document(entity) for entity in entities]
        existed = await insert_new(self.collection, documents)
        return len(documents) - len(existed)

    async def insert(self, entity: M) -> bool:
        """Insert a new entity; False (nothing written) when its id is stored already."""
        document = self.to_document(entity)
        try:
            await when_not_busy(lambda: self.collection.insert_one(document))
        except DuplicateKeyError:
            return False
        return True

    async def update(self, selector: Mapping[str, Any], update: Mapping[str, Any]) -> bool:
        """Apply an update (``$set``, ``$inc``, ``$push`` ...) to the one document ``selector``
        matches: a conditional write when the selector names the state expected. False when
        it matches none."""
        result = await when_not_busy(
            lambda: self.collection.update_one(dict(selector), dict(update))
        )
        return result.matched_count == 1

    async def update_and_get(
        self, selector: Mapping[str, Any], update: Mapping[str, Any]
    ) -> Document | None:
        """As :meth:`update`, returning the document as updated (None: no match), for a
        counter taken atomically (``$inc``)."""
        return await when_not_busy(
            lambda: self.collection.find_one_and_update(
                dict(selector), dict(update), return_document=ReturnDocument.AFTER
            )
        )

    async def count(self, query: Mapping[str, Any]) -> int:
        return int(await self.collection.count_documents(dict(query)))

    async def delete(self, entity_id: str) -> bool:
        """Delete one entity by id; False when it was not stored."""
        result = await when_not_busy(lambda: self.collection.delete_one({"_id": entity_id}))
        return result.deleted_count == 1

    async def compare_and_set(
        self, expected_version: int | None, changed: M, *, version_field: str = "version"
    ) -> bool:
        """Store ``changed`` if the stored one's ``version_field`` is still
        ``expected_version`` (None: not stored yet); False when another writer got there
        first (the caller reads again and retries)."""
        if expected_version is None:
            return await self.insert(changed)
        document = self.to_document(changed)
        result = await when_not_busy(
            lambda: self.collection.update_one(
                {"_id": document["_id"], version_field: expected_version},
                {"$set": {k: v for k, v in document.items() if k != "_id"}},
            )
        )
        return result.matched_count == 1

    async def upsert(self, entity: M) -> None:
        document = self.to_document(entity)
        await self.collection.replace_one({"_id": document["_id"]}, document, upsert=True)

    async def upsert_many(self, entities: Sequence[M]) -> None:
        """Replace or insert every entity with one bulk write per round (one entity's
        versions in the order given)."""
        documents = [self.to_document(entity) for entity in entities]
        await insert_or_write(
            self.collection,
            [(d["_id"], d, ReplaceOne({"_id": d["_id"]}, d, upsert=True)) for d in documents],
        )
