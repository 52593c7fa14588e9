"""Electronic messages as messaging keeps them, and what its API takes and answers.

An outbound message is one document: what it is about (patient, journal document, kind), whom
it goes to (HER-id), the FHIR message bundle that leaves, and its delivery state — status,
attempts, when the next attempt is due, the lease of the worker sending it, the last error, the
application receipt and the history of status changes. An inbound message is stored once per
message id, however often it is delivered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from akson_common.auth import Acting
from akson_common.events import OutboundStatus
from akson_common.identifiers import HerId, NationalId, OrganisationNumber
from akson_common.queue import SendState

ClinicalKind = Literal[
    "referral", "discharge_summary", "discharge_report", "care_information", "care_message"
]
MessageKind = Literal[
    "referral",
    "discharge_summary",
    "discharge_report",
    "care_information",
    "care_message",
    "apprec",
]
Trigger = Literal["explicit", "rule", "receipt"]
ReceiptStatus = Literal["ok", "ok_with_errors", "rejected"]
Category = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class Sender(Acting):
    """Who sent a message (a system for receipts and alerts)."""


class Receipt(BaseModel):
    """An application receipt (AppRec) as the recipient sent it."""

    apprec_id: str
    status: ReceiptStatus
    issues: list[str] = Field(default_factory=list)
    received_at: datetime


class StatusChange(BaseModel):
    status: OutboundStatus
    at: datetime
    attempts: int
    error_code: str | None = None


class OutboundMessage(SendState):
    id: str
    kind: MessageKind
    trigger: Trigger
    patient: str | None = None
    category: str | None = None
    document_id: str | None = None
    in_reply_to: str | None = None
    recipient_her_id: str
    recipient_organisation: str | None = None
    sender: Sender
    bundle: dict[str, Any]
    status: OutboundStatus
    receipt: Receipt | None = None
    history: list[StatusChange] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


class InboundMessage(BaseModel):
    id: str
    kind: str
    patient: str | None = None
    document_id: str | None = None
    sender_her_id: str
    bundle: dict[str, Any]
    status: Literal["accepted", "rejected"]
    errors: list[str] = Field(default_factory=list)
    deliveries: int = 1
    receipts: list[str] = Field(default_factory=list)
    received_at: datetime
    last_received_at: datetime


class SendIn(BaseModel):
    """An explicit send by personnel: to a HER-id, or to an organisation master data knows."""

    model_config = ConfigDict(extra="forbid")

    kind: ClinicalKind
    patient: NationalId
    recipient_her_id: HerId | None = None
    recipient_organisation: OrganisationNumber | None = None
    document_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    category: Category = "general"
    # the letter the sender writes for this message (a referral's question, a care message)
    text: Annotated[str, Field(min_length=1, max_length=20_000)] | None = None

    @model_validator(mode="after")
    def _one_recipient(self) -> SendIn:
        if (self.recipient_her_id is None) == (self.recipient_organisation is None):
            raise ValueError("name exactly one of recipient_her_id or recipient_organisation")
        if self.document_id is None and self.text is None:
            raise ValueError("a message refers to a journal document or carries a text")
        return self


class InboundAnswer(BaseModel):
    message_id: str
    status: Literal["accepted", "rejected", "receipt_applied", "receipt_unknown"]
    duplicate: bool = False
    receipt_id: str | None = None
    errors: list[str] = Field(default_factory=list)


class MessageList(BaseModel):
    items: list[OutboundMessage]
    next: str | None = None


class InboundList(BaseModel):
    items: list[InboundMessage]
    next: str | None = None
