"""Small storage helpers shared by payroll, logistics and the exporter."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from akson_common.db import Document, when_not_busy

DUPLICATE_KEY = 11000


async def insert_new(collection: AsyncCollection[Document], documents: Sequence[Document]) -> int:
    """Insert documents whose ``_id`` is not there yet; existing ones are left untouched.
    Returns how many were new. This is how projections with deterministic ids stay idempotent."""
    if not documents:
        return 0
    try:
        result = await when_not_busy(
            lambda: collection.insert_many([dict(d) for d in documents], ordered=False)
        )
    except BulkWriteError as error:
        failures = error.details.get("writeErrors", [])
        if any(failure.get("code") != DUPLICATE_KEY for failure in failures):
            raise
        return len(documents) - len(failures)
    return len(result.inserted_ids)


def as_document(model: BaseModel) -> Document:
    """A model with an ``id`` field as a document keyed by it."""
    document = model.model_dump(mode="json")
    document["_id"] = document.pop("id")
    return document


async def compare_and_set(
    collection: AsyncCollection[Document], expected_version: int | None, changed: BaseModel
) -> bool:
    """Store ``changed`` if the stored version is still ``expected_version`` (None: not stored
    yet); False when another writer got there first."""
    document = as_document(changed)
    if expected_version is None:
        try:
            await when_not_busy(lambda: collection.insert_one(document))
        except DuplicateKeyError:
            return False
        return True
    result = await when_not_busy(
        lambda: collection.update_one(
            {"_id": document["_id"], "version": expected_version},
            {"$set": {k: v for k, v in document.items() if k != "_id"}},
        )
    )
    return result.matched_count == 1


async def insert_models(collection: AsyncCollection[Document], models: Sequence[BaseModel]) -> int:
    return await insert_new(collection, [as_document(model) for model in models])
