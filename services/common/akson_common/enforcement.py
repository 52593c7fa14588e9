"""Double recording of policy decisions: every enforcement point publishes the decision ids it
enforced, so `audit` can reconcile them with OPA's (best-effort) decision log.

Decisions are buffered in memory and written every ``flush_seconds`` as ONE outbox document
holding the batch and its `policy.decision.enforced` event — one database write per batch, not
per request — deleted once the event is on the broker (the collection holds only what is still
to be published). A crash can lose at most the unflushed batch; audit then sees those decisions in
OPA's log only and reports them as a gap (loud, never silent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime

from akson_common.background import Background
from akson_common.events import (
    DECISIONS_ENFORCED,
    DecisionsEnforcedV1,
    EnforcedDecision,
    cloud_event,
)
from akson_common.outbox import Outbox

log = logging.getLogger("akson.enforcement")
ENFORCED = "enforced_decisions"
MAX_BATCH = 500


class EnforcementLog(Background):
    def __init__(self, outbox: Outbox, service: str, flush_seconds: float = 1.0) -> None:
        self.outbox = outbox
        self.service = service
        self.flush_seconds = flush_seconds
        self._pending: list[EnforcedDecision] = []
        self.name = "enforcement-log"
        outbox.track(ENFORCED, keep=False)  # a batch is only its event: deleted once sent

    def record(self, decision_id: str, allow: bool) -> None:
        self._pending.append(
            EnforcedDecision(decision_id=decision_id, allow=allow, at=datetime.now(UTC))
        )

    async def flush(self) -> int:
        """Write what was recorded so far; return how many decisions were written."""
        written = 0
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            payload = DecisionsEnforcedV1(service=self.service, decisions=tuple(batch))
            event = cloud_event(
                DECISIONS_ENFORCED, payload, source=self.service, subject=self.service
            )
            try:
                await self.outbox.insert_many(
                    ENFORCED,
                    [({"_id": str(uuid.uuid4()), "count": len(batch), "at": batch[0].at}, [event])],
                )
            except Exception:
                self._pending[:0] = batch  # keep them for the next flush
                raise
            written += len(batch)
        return written

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception as error:
                log.warning(
                    "enforced decisions not written, will retry",
                    extra={"error": type(error).__name__, "pending": len(self._pending)},
                )

    async def stop(self) -> None:
        await super().stop()
        with contextlib.suppress(Exception):
            await self.flush()
