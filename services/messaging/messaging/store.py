"""Messaging's collections: the outbound queue and the inbound messages.

The queue lives in the database, not in memory: an outbound message is a document with its
status and ``next_attempt_at``. A worker claims a due message with ONE atomic update that sets a
lease (``lease_until``, ``lease_owner``); it settles the attempt with one update conditional on
still holding that lease, which carries the status event (outbox). A worker that dies mid-flight
leaves the message ``queued`` with a lease that lapses, and any worker — the restarted one or
another replica — takes it again. Delivery is therefore at least once; receivers deduplicate
on the message id (as our inbound side does).

Datetimes are stored as BSON dates (never ISO strings), so ``$lte`` compares instants.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from pymongo import IndexModel

from akson_common.db import Database, Document, Page, Repository, when_not_busy
from akson_common.events import (
    MESSAGE_DEAD_LETTERED,
    MESSAGE_DELIVERED,
    MESSAGE_QUEUED,
    MESSAGE_RECEIPTED,
    MESSAGE_RECEIVED,
    MESSAGE_RETRY_SCHEDULED,
    MESSAGE_SENT,
    MessageReceivedV1,
    MessageStatusChangedV1,
    Topic,
    cloud_event,
)
from akson_common.outbox import Outbox
from akson_common.queue import claim_due
from messaging.models import InboundMessage, OutboundMessage, Receipt, StatusChange
from messaging.transport import TransportResult

OUTBOUND = "outbound_messages"
INBOUND = "inbound_messages"
DELIVERIES = "inbound_deliveries"
SOURCE = "messaging"


def status_event(message: OutboundMessage, topic: Topic[Any]) -> dict[str, Any]:
    payload = MessageStatusChangedV1(
        message_id=message.id,
        kind=message.kind,
        status=message.status,
        patient=message.patient,
        document_id=message.document_id,
        recipient_her_id=message.recipient_her_id,
        attempts=message.attempts,
        error_code=message.last_error_code,
        in_reply_to=message.in_reply_to,
    )
    return cloud_event(topic, payload, source=SOURCE, subject=message.patient or message.id)


class Attempted(Protocol):
    """A queue item as far as one attempt's outcome goes (a message, a notification)."""

    @property
    def attempts(self) -> int: ...


def attempt_outcome(
    message: Attempted,
    result: TransportResult,
    now: datetime,
    max_attempts: int,
    backoff: timedelta,
) -> tuple[dict[str, Any], Topic[Any]]:
    """What one attempt changes in a message, and the event that says so: delivered or sent,
    queued again after ``backoff`` while attempts remain for a retryable failure, else
    dead-lettered (the last retry failed, or the peer refused for good)."""
    attempts = message.attempts + 1
    changes: dict[str, Any] = {
        "attempts": attempts,
        "lease_until": None,
        "lease_owner": None,
        "updated_at": now,
        "last_error_code": result.error_code,
        "last_error": result.reason,
    }
    if result.outcome in ("delivered", "sent"):
        changes.update(status=result.outcome, next_attempt_at=None)
        return changes, MESSAGE_DELIVERED if result.outcome == "delivered" else MESSAGE_SENT
    if result.outcome == "retry" and attempts < max_attempts:
        changes.update(status="queued", next_attempt_at=now + backoff)
        return changes, MESSAGE_RETRY_SCHEDULED
    changes.update(status="dead_lettered", next_attempt_at=None)
    return changes, MESSAGE_DEAD_LETTERED


class OutboundQueue:
    def __init__(self, database: Database, outbox: Outbox) -> None:
        self.outbox = outbox
        self.repository = Repository(
            database,
            OUTBOUND,
            OutboundMessage,
            indexes=[
                IndexModel([("status", 1), ("next_attempt_at", 1)]),
                IndexModel([("patient", 1)]),
            ],
            dump="python",  # dates as BSON dates: the queue claims by next_attempt_at
        )
        outbox.track(OUTBOUND)

    @property
    def collection(self) -> Any:
        return self.repository.collection

    async def enqueue(self, message: OutboundMessage) -> bool:
        """Store a new queued message and its ``queued`` event; False if the id existed."""
        existed = await self.outbox.insert_many(
            OUTBOUND,
            [(self.repository.to_document(message), [status_event(message, MESSAGE_QUEUED)])],
        )
        return message.id not in existed

    async def get(self, message_id: str) -> OutboundMessage | None:
        return await self.repository.get_one_or_none(message_id)

    async def page(self, query: dict[str, Any], limit: int, after: str | None) -> Page[Any]:
        return await self.repository.paginate(query, limit=limit, after=after)

    async def claim(self, now: datetime, owner: str, lease: timedelta) -> OutboundMessage | None:
        """Take the most overdue queued message whose lease (if any) has lapsed."""
        document = await self._claim(now, owner, lease)
        return None if document is None else self.repository.to_model(document)

    async def _claim(self, now: datetime, owner: str, lease: timedelta) -> Document | None:
        return await claim_due(self.collection, now, owner, lease)

    async def settle(
        self,
        message: OutboundMessage,
        owner: str,
        result: TransportResult,
        now: datetime,
        *,
        max_attempts: int,
        backoff: timedelta,
    ) -> OutboundMessage | None:
        """Record one attempt's outcome (with its event) if the lease is still ours; None when
        it is not (the lease lapsed and another worker took it, or a receipt came first)."""
        changes, topic = attempt_outcome(message, result, now, max_attempts, backoff)
        settled = message.model_copy(update=changes)
        change = StatusChange(
            status=settled.status, at=now, attempts=settled.attempts, error_code=result.error_code
        )
        saved = await self.outbox.save(
            OUTBOUND,
            {"_id": message.id, "status": "queued", "lease_owner": owner},
            {"$set": changes, "$push": {"history": change.model_dump(mode="python")}},
            [status_event(settled, topic)],
        )
        return None if saved is None else settled

    async def apply_receipt(
        self, message_id: str, sender_her_id: str, receipt: Receipt
    ) -> OutboundMessage | None:
        """Record the first application receipt of a message from the party it was sent to;
        None if unknown, from someone else, or already receipted (a repeat changes nothing)."""
        return await self._apply_receipt(message_id, sender_her_id, receipt)

    async def _apply_receipt(
        self, message_id: str, sender_her_id: str, receipt: Receipt
    ) -> OutboundMessage | None:
        message = await self.get(message_id)
        if (
            message is None
            or message.receipt is not None
            or message.recipient_her_id != sender_her_id
        ):
            return None
        status = "receipted_ok" if receipt.status == "ok" else "receipted_error"
        error_code = None if receipt.status == "ok" else f"apprec_{receipt.status}"
        changes: dict[str, Any] = {
            "status": status,
            "receipt": receipt.model_dump(mode="python"),
            "next_attempt_at": None,
            "updated_at": receipt.received_at,
            "last_error_code": error_code,
        }
        receipted = message.model_copy(
            update={**changes, "receipt": receipt, "last_error_code": error_code}
        )
        change = StatusChange(
            status=receipted.status,
            at=receipt.received_at,
            attempts=message.attempts,
            error_code=error_code,
        )
        saved = await self.outbox.save(
            OUTBOUND,
            {"_id": message_id, "receipt": None},
            {"$set": changes, "$push": {"history": change.model_dump(mode="python")}},
            [status_event(receipted, MESSAGE_RECEIPTED)],
        )
        return None if saved is None else receipted

    async def requeue(self, message: OutboundMessage, now: datetime) -> OutboundMessage | None:
        """A dead-lettered message back in the queue (an operator's resend): attempts start
        over; None if it is no longer dead-lettered."""
        changes: dict[str, Any] = {
            "status": "queued",
            "attempts": 0,
            "next_attempt_at": now,
            "lease_until": None,
            "lease_owner": None,
            "updated_at": now,
        }
        queued = message.model_copy(update=changes)
        change = StatusChange(status="queued", at=now, attempts=0)
        saved = await self.outbox.save(
            OUTBOUND,
            {"_id": message.id, "status": "dead_lettered"},
            {"$set": changes, "$push": {"history": change.model_dump(mode="python")}},
            [status_event(queued, MESSAGE_QUEUED)],
        )
        return None if saved is None else queued


class InboundStore:
    """Inbound messages, one document per message id, written once (the relay then pulls its
    event); each delivery of it is a document of its own in ``inbound_deliveries`` (named by
    the receipt it was answered with), so a repeat never updates the message."""

    def __init__(self, database: Database, outbox: Outbox) -> None:
        self.outbox = outbox
        self.repository = Repository(
            database,
            INBOUND,
            InboundMessage,
            indexes=[IndexModel([("patient", 1)])],
            dump="python",
        )
        self.deliveries = database.collection(DELIVERIES)
        database.declare_indexes(DELIVERIES, [IndexModel([("message_id", 1)])])
        outbox.track(INBOUND)

    async def store_once(self, message: InboundMessage) -> InboundMessage:
        """Store a message the first time its id is seen (with ``messaging.message.received``
        when accepted); on a repeat, return what was stored first."""
        events = []
        if message.status == "accepted" and message.patient is not None:
            payload = MessageReceivedV1(
                message_id=message.id,
                kind=message.kind,
                patient=message.patient,
                sender_her_id=message.sender_her_id,
                document_id=message.document_id,
                received_at=message.received_at,
            )
            events.append(
                cloud_event(MESSAGE_RECEIVED, payload, source=SOURCE, subject=message.patient)
            )
        document = self.repository.to_document(message)
        for derived in ("deliveries", "receipts", "last_received_at"):
            document.pop(derived)
        existed = await self.outbox.insert_many(INBOUND, [(document, events)])
        if message.id not in existed:
            return message
        stored = await self.repository.collection.find_one({"_id": message.id})
        if stored is None:
            raise LookupError(f"inbound message {message.id} vanished")
        return self._model(stored, [])

    async def delivered(self, message_id: str, receipt_id: str, at: datetime) -> int:
        """Record one delivery (answered by ``receipt_id``); return how many there were."""
        await when_not_busy(
            lambda: self.deliveries.insert_one(
                {"_id": receipt_id, "message_id": message_id, "at": at}
            )
        )
        return await self.deliveries.count_documents({"message_id": message_id})

    def _model(self, document: Document, deliveries: list[Document]) -> InboundMessage:
        received_at = document["received_at"]
        return self.repository.to_model(
            {
                **document,
                "deliveries": max(len(deliveries), 1),
                "receipts": [d["_id"] for d in deliveries],
                "last_received_at": max([d["at"] for d in deliveries], default=received_at),
            }
        )

    async def _with_deliveries(self, document: Document) -> InboundMessage:
        cursor = self.deliveries.find({"message_id": document["_id"]}).sort("at", 1)
        return self._model(document, [d async for d in cursor])

    async def get(self, message_id: str) -> InboundMessage | None:
        document = await self.repository.collection.find_one({"_id": message_id})
        return None if document is None else await self._with_deliveries(document)

    async def page(self, query: dict[str, Any], limit: int, after: str | None) -> Page[Any]:
        selector = dict(query)
        if after is not None:
            selector["_id"] = {"$gt": after}
        cursor = self.repository.collection.find(selector).sort("_id", 1).limit(limit + 1)
        documents = [d async for d in cursor]
        items = [await self._with_deliveries(d) for d in documents[:limit]]
        next_after = str(documents[limit - 1]["_id"]) if len(documents) > limit else None
        return Page(items=items, next_after=next_after)
