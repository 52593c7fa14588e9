"""One writer at a time for messaging's documents, the outbox relay included.

FerretDB v1 (the local and test database) applies an update by reading the document, changing
it in Go and writing the whole document back, without a compare-and-set: two concurrent updates
of one document can lose one of them. The shared outbox relay updates every tracked document
(it pulls published events), so a claim, an attempt's outcome or a receipt written at the same
moment could be undone. Messaging therefore has its own outbox whose relay pulls under the same
lock as messaging's own updates. MongoDB applies each update atomically and needs none of this;
with FerretDB v1 it holds within one process (run one replica there).
"""

from __future__ import annotations

import asyncio

from akson_common.db import Database
from akson_common.events import EventPublisher
from akson_common.outbox import Outbox


class LockedOutbox(Outbox):
    """The shared outbox whose relay sweeps under ``lock``; messaging's updates take it too.

    A sweep holds the lock while it publishes (a few milliseconds per event to the sidecar):
    simpler than splitting publish and pull, and updates wait at most one sweep."""

    def __init__(self, database: Database, publisher: EventPublisher, sweep_seconds: float) -> None:
        super().__init__(database, publisher, sweep_seconds)
        self.lock = asyncio.Lock()

    async def relay_once(self) -> int:
        async with self.lock:
            return await super().relay_once()
