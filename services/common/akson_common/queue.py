"""A work queue in a collection: items that wait for a worker (``status`` "queued", due at
``next_attempt_at``), leased to one worker at a time, with their attempts and last error.
Messaging's send worker and subscription notifier and welfare's journal writes use it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from pymongo import ReturnDocument

from akson_common.db import Document, when_not_busy


class SendState(BaseModel):
    """Where a queue item stands with its worker: attempts, the next one, its lease and the
    last error."""

    attempts: int = 0
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    lease_owner: str | None = None
    last_error_code: str | None = None
    last_error: str | None = None


async def claim_due(
    collection: Any, now: datetime, owner: str, lease: timedelta
) -> Document | None:
    """Lease the most overdue queued item of ``collection`` whose lease (if any) has lapsed:
    ONE atomic update, so two workers never take the same item."""
    return await when_not_busy(
        lambda: collection.find_one_and_update(
            {
                "status": "queued",
                "next_attempt_at": {"$lte": now},
                "$or": [{"lease_until": None}, {"lease_until": {"$lte": now}}],
            },
            {"$set": {"lease_until": now + lease, "lease_owner": owner}},
            sort=[("next_attempt_at", 1)],
            return_document=ReturnDocument.AFTER,
        )
    )
