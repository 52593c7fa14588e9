"""Messaging logic: explicit sends, dispatch rules, inbound messages and receipts, resends.

Every outbound message enters the database queue (``store.OutboundQueue``) and leaves through
the worker (``worker.SendWorker``); nothing is sent from a request. The access policy is asked
before a message is queued — by the caller for explicit sends (``api.py``), here for automatic
dispatches, as the service itself.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from akson_common.auth import Principal
from akson_common.errors import BadRequest, Conflict, Unprocessable
from akson_common.events import Delivery, DocumentRecordedV1, Outcome, WelfareAlertRaisedV1
from akson_common.policy import (
    PolicyContext,
    PolicyEnforcementPoint,
    PolicyUnavailable,
    ResourceRef,
)
from akson_common.projections import PatientProjections
from messaging import fhir
from messaging.directory import Directory
from messaging.models import (
    InboundAnswer,
    InboundMessage,
    MessageKind,
    OutboundMessage,
    Receipt,
    ReceiptStatus,
    Sender,
    SendIn,
    StatusChange,
    Trigger,
)
from messaging.settings import MessagingSettings
from messaging.store import InboundStore, OutboundQueue

log = logging.getLogger("akson.messaging")
RESOURCE_TYPE = "Communication"
# Automatic dispatches are decided for the service itself: a system subject holding the one
# scope the policy's system-client row needs (``Communication.write``), purpose treatment.
SYSTEM_PRINCIPAL = Principal(id="akson-messaging", kind="system", scopes=("Communication.write",))
RULE_NAMESPACE = uuid.UUID("5b0f3c1e-7a52-4d0e-9a51-6d1f8c2b9e11")


def now() -> datetime:
    return datetime.now(UTC)


WELFARE_RULES = {
    "missed_dose": "missed dose",
    "out_of_range": "measurement out of range",
    "alarm": "alarm",
}


def welfare_alert_text(event: WelfareAlertRaisedV1) -> str:
    """The alert as a care message's text: the rule and its numbers (the event's facts only)."""
    parts = [f"Welfare technology: {WELFARE_RULES[event.rule]}"]
    if event.code is not None:
        parts.append(f"code {event.code_system + '|' if event.code_system else ''}{event.code}")
    if event.value is not None:
        unit = f" {event.value_unit}" if event.value_unit else ""
        bounds = ", ".join(
            f"{name} {bound:g}"
            for name, bound in (("low", event.low), ("high", event.high))
            if bound is not None
        )
        parts.append(f"value {event.value:g}{unit}" + (f" ({bounds})" if bounds else ""))
    parts.append(f"device {event.device}")
    if event.occurred_at is not None:
        parts.append(f"at {event.occurred_at.isoformat()}")
    return "; ".join(parts) + "."


class Messaging:
    def __init__(
        self,
        settings: MessagingSettings,
        queue: OutboundQueue,
        inbound: InboundStore,
        directory: Directory,
        projections: PatientProjections,
        pep: PolicyEnforcementPoint,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.inbound = inbound
        self.directory = directory
        self.projections = projections
        self.pep = pep
        self.on_enqueued: list[Any] = []

    async def policy_context(self, patient: str | None) -> PolicyContext:
        """The patient's care relations, consent directives and registry facts (one lookup)."""
        if patient is None:
            return PolicyContext()
        return await self.projections.context(patient)

    def _new(
        self,
        *,
        message_id: str,
        kind: MessageKind,
        trigger: Trigger,
        recipient_her_id: str,
        bundle: dict[str, Any],
        sender: Sender,
        at: datetime,
        **facts: Any,
    ) -> OutboundMessage:
        return OutboundMessage(
            id=message_id,
            kind=kind,
            trigger=trigger,
            recipient_her_id=recipient_her_id,
            bundle=bundle,
            sender=sender,
            status="queued",
            next_attempt_at=at,
            history=[StatusChange(status="queued", at=at, attempts=0)],
            created_at=at,
            updated_at=at,
            **facts,
        )

    async def _enqueue(self, message: OutboundMessage) -> bool:
        created = await self.queue.enqueue(message)
        for wake in self.on_enqueued:
            wake()
        return created

    async def _sender_her_id(self, principal: Principal) -> str:
        for org in (principal.unit, principal.organisation):
            if org:
                party = await self.directory.party(org)
                if party is not None:
                    return party.her_id
        return self.settings.her_id

    # -- outbound ------------------------------------------------------------------------
    async def send(self, request: SendIn, principal: Principal) -> OutboundMessage:
        """An explicit send the policy already allowed: resolve the recipient, build, queue."""
        recipient_her_id, recipient_org = request.recipient_her_id, None
        if request.recipient_organisation is not None:
            party = await self.directory.party(request.recipient_organisation)
            if party is None:
                raise Unprocessable(
                    "master data knows no HER-id for this organisation",
                    errors=[{"loc": ["body", "recipient_organisation"], "msg": "no HER-id"}],
                )
            recipient_her_id, recipient_org = party.her_id, party.organisation
        assert recipient_her_id is not None  # one of the two, checked by SendIn
        at, message_id = now(), str(uuid.uuid4())
        bundle = fhir.message_bundle(
            message_id=message_id,
            kind=request.kind,
            at=at,
            sender_her_id=await self._sender_her_id(principal),
            recipient_her_id=recipient_her_id,
            patient=request.patient,
            category=request.category,
            document_id=request.document_id,
            type_code=None,
            text=request.text,
            journal_fhir_base=self.settings.journal_fhir_base,
        )
        message = self._new(
            message_id=message_id,
            kind=request.kind,
            trigger="explicit",
            recipient_her_id=recipient_her_id,
            bundle=bundle,
            sender=Sender.of(principal),
            at=at,
            patient=request.patient,
            category=request.category,
            document_id=request.document_id,
            recipient_organisation=recipient_org,
        )
        await self._enqueue(message)
        return message

    async def on_document_recorded(self, event: DocumentRecordedV1, delivery: Delivery) -> Outcome:
        """Dispatch rule: a document of a configured type, for a patient whose GP is off the
        platform, goes to that GP's HER-id — if the policy allows the service to send it."""
        kind = self.settings.dispatch_rules.get(event.type_code or "")
        if kind is None:
            return Outcome.SUCCESS
        context = await self.policy_context(event.patient)
        for relation in context.care_relations:
            if relation["kind"] != "gp_list":
                continue
            party = await self.directory.gp_party(relation)
            if party is None or party.on_platform:
                continue
            resource = ResourceRef(
                type=RESOURCE_TYPE,
                id=event.document_id,
                patient=event.patient,
                category=event.category,
                unit=event.unit,
                organisation=event.organisation,
                municipality=event.municipality,
                author=event.author,
            )
            try:
                decision = await self.pep.decide(SYSTEM_PRINCIPAL, "write", resource, context)
            except PolicyUnavailable:
                return Outcome.RETRY  # no decision yet: ask again on redelivery
            if not decision.allow:
                log.warning(
                    "automatic dispatch refused by policy",
                    extra={"document_id": event.document_id, "reasons": list(decision.reasons)},
                )
                continue
            await self._dispatch(event, kind, party.her_id, party.organisation, delivery)
        return Outcome.SUCCESS

    async def _dispatch(
        self,
        event: DocumentRecordedV1,
        kind: str,
        her_id: str,
        organisation: str,
        delivery: Delivery,
    ) -> None:
        # one message per document version and recipient, however often the event arrives
        message_id = str(
            uuid.uuid5(RULE_NAMESPACE, f"{event.document_id}:{event.version}:{her_id}")
        )
        at = now()
        bundle = fhir.message_bundle(
            message_id=message_id,
            kind=kind,
            at=at,
            sender_her_id=self.settings.her_id,
            recipient_her_id=her_id,
            patient=event.patient,
            category=event.category,
            document_id=event.document_id,
            type_code=event.type_code,
            text=None,
            journal_fhir_base=self.settings.journal_fhir_base,
        )
        message = self._new(
            message_id=message_id,
            kind=kind,  # type: ignore[arg-type]  # the rules table holds message kinds
            trigger="rule",
            recipient_her_id=her_id,
            bundle=bundle,
            sender=Sender.of(SYSTEM_PRINCIPAL),
            at=at,
            patient=event.patient,
            category=event.category,
            document_id=event.document_id,
            recipient_organisation=organisation,
        )
        if await self._enqueue(message):
            log.info(
                "automatic dispatch queued",
                extra={"message_id": message_id, "event_id": delivery.event_id},
            )

    async def on_welfare_alert(self, event: WelfareAlertRaisedV1, delivery: Delivery) -> Outcome:
        """A welfare-technology alert for a home-care unit off the platform goes to that unit
        as a care message (the rule and its numbers as text) — if the policy allows the
        service to send it. A unit on the platform has the event itself."""
        if event.unit is None:
            return Outcome.SUCCESS
        party = await self.directory.party(event.unit)
        if party is None or party.on_platform:
            return Outcome.SUCCESS
        context = await self.policy_context(event.patient)
        resource = ResourceRef(
            type=RESOURCE_TYPE, id=event.alert_id, patient=event.patient, category="welfare"
        )
        try:
            decision = await self.pep.decide(SYSTEM_PRINCIPAL, "write", resource, context)
        except PolicyUnavailable:
            return Outcome.RETRY
        if not decision.allow:
            log.warning(
                "welfare alert dispatch refused by policy",
                extra={"alert_id": event.alert_id, "reasons": list(decision.reasons)},
            )
            return Outcome.SUCCESS
        # one message per alert and recipient, however often the event arrives
        message_id = str(uuid.uuid5(RULE_NAMESPACE, f"welfare:{event.alert_id}:{party.her_id}"))
        at = now()
        bundle = fhir.message_bundle(
            message_id=message_id,
            kind="care_message",
            at=at,
            sender_her_id=self.settings.her_id,
            recipient_her_id=party.her_id,
            patient=event.patient,
            category="welfare",
            document_id=None,
            type_code=None,
            text=welfare_alert_text(event),
            journal_fhir_base=self.settings.journal_fhir_base,
        )
        message = self._new(
            message_id=message_id,
            kind="care_message",
            trigger="rule",
            recipient_her_id=party.her_id,
            bundle=bundle,
            sender=Sender.of(SYSTEM_PRINCIPAL),
            at=at,
            patient=event.patient,
            category="welfare",
            recipient_organisation=party.organisation,
        )
        if await self._enqueue(message):
            log.info(
                "welfare alert dispatch queued",
                extra={"message_id": message_id, "event_id": delivery.event_id},
            )
        return Outcome.SUCCESS

    async def resend(self, message: OutboundMessage) -> OutboundMessage:
        queued = await self.queue.requeue(message, now())
        if queued is None:
            raise Conflict(f"only a dead-lettered message can be resent (it is {message.status})")
        for wake in self.on_enqueued:
            wake()
        return queued

    # -- inbound -------------------------------------------------------------------------
    async def receive(self, raw: Any) -> InboundAnswer:
        """Validate, store once, announce, and answer with an application receipt (queued like
        any outbound message); an AppRec is applied to the message it answers."""
        try:
            parsed = fhir.parse_message(raw)
        except fhir.Unreadable as error:
            raise BadRequest(str(error)) from None
        at = now()
        if parsed.is_receipt:
            if parsed.errors or parsed.in_reply_to is None or parsed.receipt_status is None:
                raise Unprocessable("invalid application receipt", errors=parsed.errors)
            receipt = Receipt(
                apprec_id=parsed.message_id,
                status=parsed.receipt_status,
                issues=parsed.receipt_issues,
                received_at=at,
            )
            applied = await self.queue.apply_receipt(
                parsed.in_reply_to, parsed.sender_her_id, receipt
            )
            return InboundAnswer(
                message_id=parsed.message_id,
                status="receipt_applied" if applied else "receipt_unknown",
            )
        message = InboundMessage(
            id=parsed.message_id,
            kind=parsed.kind,
            patient=parsed.patient,
            document_id=parsed.document_id,
            sender_her_id=parsed.sender_her_id,
            bundle=raw if isinstance(raw, dict) else {},
            status="rejected" if parsed.errors else "accepted",
            errors=parsed.errors,
            received_at=at,
            last_received_at=at,
        )
        stored = await self.inbound.store_once(message)
        apprec_id = str(uuid.uuid4())
        deliveries = await self.inbound.delivered(stored.id, apprec_id, at)
        await self._receipt(stored, apprec_id, at)
        return InboundAnswer(
            message_id=stored.id,
            status=stored.status,
            duplicate=deliveries > 1,
            receipt_id=apprec_id,
            errors=stored.errors,
        )

    async def _receipt(self, message: InboundMessage, apprec_id: str, at: datetime) -> None:
        status: ReceiptStatus = "ok" if message.status == "accepted" else "rejected"
        bundle = fhir.apprec_bundle(
            apprec_id=apprec_id,
            at=at,
            sender_her_id=self.settings.her_id,
            recipient_her_id=message.sender_her_id,
            in_reply_to=message.id,
            status=status,
            issues=message.errors,
        )
        await self._enqueue(
            self._new(
                message_id=apprec_id,
                kind="apprec",
                trigger="receipt",
                recipient_her_id=message.sender_her_id,
                bundle=bundle,
                sender=Sender.of(SYSTEM_PRINCIPAL),
                at=at,
                in_reply_to=message.id,
            )
        )
