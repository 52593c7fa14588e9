"""A patient's messages as callers reach them: every operation asks the policy first
(resource type ``Communication``, with the patient's care relations), and what a write
answers is a read too. The routes (messaging/api.py) only translate HTTP."""

from __future__ import annotations

from akson_common.auth import Principal
from akson_common.db import Page
from akson_common.errors import NotFound
from akson_common.events import OutboundStatus
from akson_common.policy import Action, PolicyEnforcementPoint, ResourceRef
from messaging.models import InboundMessage, OutboundMessage, SendIn
from messaging.service import RESOURCE_TYPE, Messaging


class MessageAccess:
    def __init__(self, messaging: Messaging, pep: PolicyEnforcementPoint) -> None:
        self.messaging, self.pep = messaging, pep

    async def _about_patient(
        self, principal: Principal, action: Action, patient: str | None, category: str | None
    ) -> None:
        """Ask about a patient's messages as a whole (send, list): 403 when refused."""
        context = await self.messaging.policy_context(patient)
        resource = ResourceRef(type=RESOURCE_TYPE, patient=patient, category=category)
        await self.pep.enforce(principal, action, resource, context)

    async def _visible(
        self,
        principal: Principal,
        action: Action,
        message_id: str,
        found: OutboundMessage | InboundMessage | None,
        category: str | None,
    ) -> None:
        """Decide ``action`` on one message: 404 alike when unknown or refused."""
        patient = found.patient if found is not None else None
        context = await self.messaging.policy_context(patient)
        resource = ResourceRef(
            type=RESOURCE_TYPE, patient=patient, category=category, id=message_id
        )
        await self.pep.visible(
            principal,
            action,
            resource,
            context,
            known=found is not None,
            not_found=NotFound("no such message"),
        )

    async def read_back(self, principal: Principal, message: OutboundMessage) -> bool:
        """A response body is a read: may the writer read the message it queued?"""
        context = await self.messaging.policy_context(message.patient)
        resource = ResourceRef(
            type=RESOURCE_TYPE, patient=message.patient, category=message.category, id=message.id
        )
        return await self.pep.read_back(principal, resource, context) is not None

    # -- outbound -----------------------------------------------------------------------------

    async def send(self, principal: Principal, request: SendIn) -> OutboundMessage:
        """Queue a message; the policy is asked before anything about the patient can leave."""
        await self._about_patient(principal, "write", request.patient, request.category)
        return await self.messaging.send(request, principal)

    async def outbound(
        self, principal: Principal, message_id: str, action: Action = "read"
    ) -> OutboundMessage:
        message = await self.messaging.queue.get(message_id)
        category = message.category if message is not None else None
        await self._visible(principal, action, message_id, message, category)
        assert message is not None  # visible raised for an unknown one
        return message

    async def outbound_page(
        self,
        principal: Principal,
        patient: str | None,
        status: OutboundStatus | None,
        limit: int,
        after: str | None,
    ) -> Page[OutboundMessage]:
        """One patient's, or (operators, without ``patient``) every patient's, by status."""
        category = "general" if patient else None
        await self._about_patient(principal, "search", patient, category)
        query: dict[str, str] = {}
        if patient is not None:
            query["patient"] = patient
        if status is not None:
            query["status"] = status
        return await self.messaging.queue.page(query, limit, after)

    async def resend(self, principal: Principal, message_id: str) -> OutboundMessage:
        """Put a dead-lettered message back in the queue, its attempts starting over."""
        message = await self.outbound(principal, message_id, "write")
        return await self.messaging.resend(message)

    # -- inbound ------------------------------------------------------------------------------

    async def inbound(self, principal: Principal, message_id: str) -> InboundMessage:
        message = await self.messaging.inbound.get(message_id)
        await self._visible(principal, "read", message_id, message, "general")
        assert message is not None  # visible raised for an unknown one
        return message

    async def inbound_page(
        self, principal: Principal, patient: str, limit: int, after: str | None
    ) -> Page[InboundMessage]:
        await self._about_patient(principal, "search", patient, "general")
        return await self.messaging.inbound.page({"patient": patient}, limit, after)
