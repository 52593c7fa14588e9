"""Welfare's collections (database ``akson_welfare``).

- ``devices``: one document per device (its id), with its assignment and history;
- ``messages``: one per message a sender sent (``_id`` a digest of sender and message id), with
  the receipt it was answered with, how often it was delivered, what went into the journal, and
  the alerts it raised as outbox events: the message and its events are one write. An accepted
  message's entries wait in it (``pending``, status ``queued``: a work queue,
  akson_common.queue) until the journal took each; a write the journal could not take for now
  (down, 5xx) is tried again with backoff, idempotent by its ``Idempotency-Key``;
- ``dead_letters``: one per entry the journal refused for good (or after the last attempt), kept
  with the entry for an operator.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from pymongo import IndexModel

from akson_common.db import Database, Repository
from akson_common.queue import SendState
from welfare.models import Device

DEVICES = "devices"
MESSAGES = "messages"
DEAD_LETTERS = "dead_letters"


def message_key(sender: str, message_id: str) -> str:
    """The stored message's id: the same message id from two senders is two messages."""
    return hashlib.sha256(f"{sender}\n{message_id}".encode()).hexdigest()[:32]


class PendingEntry(BaseModel):
    """An accepted entry the journal has not taken yet."""

    index: int
    resource_type: str
    resource: dict[str, Any]


class StoredMessage(SendState):
    key: str
    message_id: str
    sender: str
    device: str
    patient: str | None = None
    verdict: str
    receipt: dict[str, Any]
    received_at: datetime
    deliveries: int = 1
    recorded: list[str] = Field(default_factory=list)
    dead_letters: int = 0
    alerts: list[str] = Field(default_factory=list)
    # "queued" while entries wait for the journal, then "recorded"; None for a rejected message
    status: Literal["queued", "recorded"] | None = None
    pending: list[PendingEntry] = Field(default_factory=list)


class DeadLetter(BaseModel):
    id: str
    message_key: str
    entry: int
    resource_type: str
    resource: dict[str, Any]
    status: int
    at: datetime


class WelfareStore:
    def __init__(self, database: Database) -> None:
        self.devices = Repository(
            database,
            DEVICES,
            Device,
            indexes=[IndexModel([("assignment.patient", 1)])],
        )
        self.messages = Repository(
            database,
            MESSAGES,
            StoredMessage,
            id_field="key",
            indexes=[
                IndexModel([("patient", 1), ("received_at", 1)]),
                IndexModel([("status", 1), ("next_attempt_at", 1)]),
            ],
            # dates as BSON dates: the retry worker claims by ``next_attempt_at <= now``, which
            # matches no ISO string (a message stored queued, then a crash, was never retried)
            dump="python",
        )
        self.dead_letters = Repository(
            database, DEAD_LETTERS, DeadLetter, indexes=[IndexModel([("message_key", 1)])]
        )
