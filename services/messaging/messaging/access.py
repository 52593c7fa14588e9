"""A patient's messages and the FHIR Subscriptions as callers reach them: every operation asks
the policy first (messages: resource type ``Communication``, with the patient's care
relations; subscriptions: the resources of their topic), and what a write answers is a read
too. The routes (``api.py``, ``fhir_api.py``) only translate HTTP."""

from __future__ import annotations

from typing import Any

from akson_common.auth import Principal
from akson_common.db import Page
from akson_common.errors import NotFound
from akson_common.events import OutboundStatus
from akson_common.policy import Action, PolicyContext, PolicyEnforcementPoint, ResourceRef
from messaging.models import InboundMessage, OutboundMessage, SendIn
from messaging.notifier import Notifier, owner_key
from messaging.service import RESOURCE_TYPE, Messaging
from messaging.subscriptions import Notification, StoredSubscription
from messaging.topics import TOPICS, Topic

NO_SUCH = "no such subscription"
# the events a $events answer holds at most
MAX_EVENTS = 50


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


# -- FHIR Subscriptions --------------------------------------------------------------------------


def _about(subscription: StoredSubscription | None) -> ResourceRef:
    """What holding a subscription reveals: the topic's resources of its patient."""
    if subscription is None:
        return ResourceRef(type="Subscription")
    topic: Topic | None = TOPICS.get(subscription.topic)
    return ResourceRef(
        type=subscription.resource_type,
        patient=subscription.patient,
        category=topic.decided_as if topic else None,
    )


class SubscriptionAccess:
    """A caller's own FHIR Subscriptions: subscribing is decided (in the notifier) as a
    ``search`` of the topic's resources of the filtered patient; reading one, its status or its
    events as a ``read`` of them, now. Anyone else's reads like an unknown one (404)."""

    def __init__(self, notifier: Notifier, pep: PolicyEnforcementPoint) -> None:
        self.notifier, self.pep = notifier, pep

    async def subscribe(self, principal: Principal, raw: Any) -> tuple[StoredSubscription, bool]:
        """The subscription requested, and whether the caller may read it back."""
        subscription = await self.notifier.subscribe(raw, principal)
        context = await self.notifier.projections.context(subscription.patient)
        readable = await self.pep.read_back(principal, _about(subscription), context)
        return subscription, readable is not None

    async def own(self, principal: Principal, subscription_id: str) -> StoredSubscription:
        """The caller's subscription, decided as a read; 404 alike when unknown, someone else's
        or refused."""
        found = await self.notifier.store.get(subscription_id)
        mine = found is not None and found.owner_key == owner_key(principal)
        context = (
            await self.notifier.projections.context(found.patient) if found else PolicyContext()
        )
        await self.pep.visible(
            principal, "read", _about(found), context, known=mine, not_found=NotFound(NO_SUCH)
        )
        assert found is not None
        return found

    async def readable(
        self, principal: Principal, status: str | None, limit: int, after: str | None
    ) -> Page[StoredSubscription]:
        """A page of the caller's own subscriptions, of those it may read now."""
        page = await self.notifier.store.owned(owner_key(principal), limit, after)
        items = []
        for subscription in page.items:
            if status is not None and subscription.status != status:
                continue
            context = await self.notifier.projections.context(subscription.patient)
            decision = await self.pep.decide(principal, "read", _about(subscription), context)
            if decision.allow:
                items.append(subscription)
        return Page(items=items, next_after=page.next_after)

    async def unsubscribe(self, principal: Principal, subscription_id: str) -> None:
        """The owner ends it: no patient data in the answer, so no decision (a subscriber whose
        access ended can still stop its notifications)."""
        found = await self.notifier.store.get(subscription_id)
        if found is None or found.owner_key != owner_key(principal):
            raise NotFound(NO_SUCH)
        await self.notifier.unsubscribe(subscription_id)

    async def events(
        self, principal: Principal, subscription_id: str, since: int | None, until: int | None
    ) -> tuple[StoredSubscription, list[Notification]]:
        """The notified events in a range (at most :data:`MAX_EVENTS`), each decided again for
        the caller now (what it may no longer read is left out)."""
        subscription = await self.own(principal, subscription_id)
        high = min(until or subscription.events_since_start, subscription.events_since_start)
        low = max(since or high - MAX_EVENTS + 1, high - MAX_EVENTS + 1, 1)
        store = self.notifier.store
        events = await store.events(subscription.id, low, high) if high >= low else []
        allowed = [e for e in events if await self.notifier.refusal(subscription, e) is None]
        return subscription, allowed
