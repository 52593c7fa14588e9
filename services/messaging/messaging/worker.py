"""The send worker: claims due messages from the database queue and hands them to the
transport, one at a time, recording each attempt (with its event) under its lease.

Retries belong to messaging, not to the sidecar: every attempt, its error and the next due
time are visible per message, backoff is exponential (``retry_base_seconds * 2**(n-1)``, at most
``retry_max_seconds``) and after ``max_attempts`` the message is dead-lettered with an alert
event. A restart loses nothing: the queue is in the database and a lapsed lease is taken again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

from messaging.settings import MessagingSettings
from messaging.store import OutboundQueue
from messaging.transport import Transport, TransportResult

log = logging.getLogger("akson.messaging.worker")


def backoff(attempts: int, base_seconds: float, max_seconds: float) -> timedelta:
    """The wait after the ``attempts``-th failed attempt (1, 2, ...)."""
    return timedelta(seconds=min(base_seconds * 2 ** max(attempts - 1, 0), max_seconds))


class SendWorker:
    def __init__(
        self, queue: OutboundQueue, transport: Transport, settings: MessagingSettings
    ) -> None:
        self.queue = queue
        self.transport = transport
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Send every message that is due now; return how many attempts were made."""
        lease = timedelta(seconds=self.settings.lease_seconds)
        attempts = 0
        while (message := await self.queue.claim(datetime.now(UTC), self.owner, lease)) is not None:
            try:
                result = await self.transport.send(message.recipient_her_id, message.bundle)
            except Exception as error:
                # a message that cannot even be sent is a failed attempt like any other:
                # counted, retried with backoff, dead-lettered after max_attempts — it never
                # holds the queue (it used to abort the round and come back first every time)
                log.exception("message could not be sent", extra={"message_id": message.id})
                result = TransportResult(
                    "retry", error_code="internal_error", reason=type(error).__name__
                )
            attempts += 1
            wait = backoff(
                message.attempts + 1,
                self.settings.retry_base_seconds,
                self.settings.retry_max_seconds,
            )
            settled = await self.queue.settle(
                message,
                self.owner,
                result,
                datetime.now(UTC),
                max_attempts=self.settings.max_attempts,
                backoff=wait,
            )
            log.info(
                "message attempt",
                extra={
                    "message_id": message.id,
                    "outcome": result.outcome,
                    "error_code": result.error_code,
                    "status": settled.status if settled else "superseded",
                },
            )
        return attempts

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as error:
                # the database is away: the queue is still there when it comes back
                log.warning("send worker failed, will retry", extra={"error": type(error).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_seconds)
            self._wake.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="send-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
