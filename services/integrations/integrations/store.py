"""Small storage helpers shared by payroll, logistics and the exporter."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

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
