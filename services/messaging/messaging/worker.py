"""The send worker: claims due items from a database queue and hands them to their transport,
one at a time, recording each attempt under its lease. One worker sends electronic messages
(through the message transport), another subscription notifications (rest-hook): the same
leases, backoff, attempts and dead letters for both.

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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from akson_common.background import Background
from messaging.settings import MessagingSettings
from messaging.transport import TransportResult

log = logging.getLogger("akson.messaging.worker")


def backoff(attempts: int, base_seconds: float, max_seconds: float) -> timedelta:
    """The wait after the ``attempts``-th failed attempt (1, 2, ...)."""
    return timedelta(seconds=min(base_seconds * 2 ** max(attempts - 1, 0), max_seconds))


class Item(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def attempts(self) -> int: ...

    @property
    def status(self) -> Any: ...


M = TypeVar("M", bound=Item)


class Queue(Protocol[M]):
    async def claim(self, now: datetime, owner: str, lease: timedelta) -> M | None: ...

    async def settle(
        self,
        item: M,
        owner: str,
        result: TransportResult,
        now: datetime,
        *,
        max_attempts: int,
        backoff: timedelta,
    ) -> M | None: ...


class SendWorker(Background, Generic[M]):
    def __init__(
        self,
        queue: Queue[M],
        send: Callable[[M], Awaitable[TransportResult]],
        settings: MessagingSettings,
        name: str = "send-worker",
    ) -> None:
        self.queue = queue
        self.send = send
        self.settings = settings
        self.name = name
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Send every message that is due now; return how many attempts were made."""
        lease = timedelta(seconds=self.settings.lease_seconds)
        attempts = 0
        while (message := await self.queue.claim(datetime.now(UTC), self.owner, lease)) is not None:
            try:
                result = await self.send(message)
            except Exception as error:
                # a message that cannot even be sent is a failed attempt like any other:
                # counted, retried with backoff, dead-lettered after max_attempts — it never
                # holds the queue (it used to abort the round and come back first every time)
                log.exception(
                    "message could not be sent",
                    extra={"message_id": message.id, "worker": self.name},
                )
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
                    "worker": self.name,
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
