"""Topic-based subscriptions: keeping them, matching journal events to them, and notifying.

Every notification is a queue item in ``subscription_notifications`` that the send worker
(:class:`messaging.worker.SendWorker`, the one electronic messages use) claims under a lease and
settles with the same backoff, attempts and dead letters (:func:`messaging.store.attempt_outcome`);
nothing is sent from a request or an event handler.

- **handshake**: a new subscription is ``requested`` and a handshake is queued; the first 2xx
  makes it ``active`` (heartbeats start), a dead-lettered handshake makes it ``error``;
- **event-notification**: ``journal.document.recorded`` (documents) or ``journal.record.changed``
  (results, the medication list, critical information) for a patient with active subscriptions
  to a matching topic queues one notification per subscription and document version (its id
  derived from both, so a redelivered event queues nothing new). **At every attempt** the
  policy decides, for the subscriber's principal as its token said when it subscribed, a read
  of that resource now — a refusal (a block registered since, a care relation ended) is decided,
  logged and the notification settled ``refused``, never sent;
- **heartbeat**: every ``heartbeatPeriod`` of an active subscription;
- an event notification dead-lettered (the endpoint kept failing) puts the subscription in
  ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pymongo import IndexModel

from akson_common.auth import Principal
from akson_common.background import Background
from akson_common.db import Database, Page, Repository
from akson_common.errors import Unprocessable
from akson_common.events import Delivery, DocumentRecordedV1, Outcome, RecordChangedV1
from akson_common.fhir import FHIR_JSON
from akson_common.policy import PolicyEnforcementPoint, PolicyUnavailable, ResourceRef
from akson_common.projections import PatientProjections
from akson_common.queue import claim_due
from messaging.settings import MessagingSettings
from messaging.store import attempt_outcome
from messaging.subscriptions import (
    SIGNATURE_HEADER,
    Limits,
    Notification,
    NotificationChange,
    NotificationType,
    StoredSubscription,
    SubscriptionState,
    endpoint_problem,
    notification_bundle,
    parse_subscription,
    signature,
)
from messaging.topics import TOPICS
from messaging.transport import MAX_REASON, TransportResult, peer_result

log = logging.getLogger("akson.messaging.subscriptions")
SUBSCRIPTIONS = "subscriptions"
NOTIFICATIONS = "subscription_notifications"
NOTIFICATION_NAMESPACE = uuid.UUID("0c6f2a8e-3d7b-4f55-9a0e-2b8c1d4e6f70")
REFUSED = "policy_refused"
GONE = "subscription_gone"
# what is read of an endpoint's answer (its reason in the notification's last error)
MAX_ANSWER_BYTES = 4096


def now() -> datetime:
    return datetime.now(UTC)


def owner_key(principal: Principal) -> str:
    return f"{principal.kind}:{principal.id}"


def notification_id(subscription_id: str, what: str) -> str:
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"{subscription_id}:{what}"))


class SubscriptionStore:
    def __init__(self, database: Database) -> None:
        self.subscriptions = Repository(
            database,
            SUBSCRIPTIONS,
            StoredSubscription,
            indexes=[
                IndexModel([("owner_key", 1)]),
                IndexModel([("patient", 1), ("resource_type", 1)]),
                IndexModel([("status", 1), ("next_heartbeat_at", 1)]),
            ],
            dump="python",  # dates as BSON dates: heartbeats and ends are found by date
        )
        self.notifications = Repository(
            database,
            NOTIFICATIONS,
            Notification,
            indexes=[
                IndexModel([("status", 1), ("next_attempt_at", 1)]),
                IndexModel([("subscription_id", 1), ("event_number", 1)]),
            ],
            dump="python",  # the queue claims by next_attempt_at
        )

    # -- subscriptions ----------------------------------------------------------------------
    async def add(self, subscription: StoredSubscription) -> None:
        if not await self.subscriptions.insert(subscription):
            raise LookupError(f"subscription {subscription.id} exists")

    async def get(self, subscription_id: str) -> StoredSubscription | None:
        return await self.subscriptions.get_one_or_none(subscription_id)

    async def owned(self, key: str, limit: int, after: str | None) -> Page[StoredSubscription]:
        return await self.subscriptions.paginate({"owner_key": key}, limit=limit, after=after)

    async def count_owned(self, key: str) -> int:
        return await self.subscriptions.count({"owner_key": key})

    async def remove(self, subscription_id: str) -> bool:
        return await self.subscriptions.delete(subscription_id)

    async def matching(self, patient: str, resource_type: str) -> list[StoredSubscription]:
        return await self.subscriptions.find(
            {"patient": patient, "resource_type": resource_type, "status": "active"}, limit=1000
        )

    async def set_status(
        self,
        subscription_id: str,
        status: SubscriptionState,
        at: datetime,
        *,
        error: str | None = None,
        only_from: tuple[SubscriptionState, ...],
        next_heartbeat_at: datetime | None = None,
    ) -> bool:
        changes: dict[str, Any] = {"status": status, "error": error, "updated_at": at}
        if status == "active":
            changes["next_heartbeat_at"] = next_heartbeat_at
        return await self.subscriptions.update(
            {"_id": subscription_id, "status": {"$in": list(only_from)}}, {"$set": changes}
        )

    async def next_event_number(self, subscription_id: str) -> int | None:
        document = await self.subscriptions.update_and_get(
            {"_id": subscription_id}, {"$inc": {"events_since_start": 1}}
        )
        return None if document is None else int(document["events_since_start"])

    async def due_heartbeats(self, at: datetime) -> list[StoredSubscription]:
        return await self.subscriptions.find(
            {"status": "active", "next_heartbeat_at": {"$lte": at}}, limit=500
        )

    async def take_heartbeat(self, subscription: StoredSubscription, at: datetime) -> bool:
        """Move the subscription's next heartbeat on (compare-and-set: one replica takes it)."""
        assert subscription.heartbeat_seconds is not None
        following = at + timedelta(seconds=subscription.heartbeat_seconds)
        return await self.subscriptions.update(
            {"_id": subscription.id, "next_heartbeat_at": subscription.next_heartbeat_at},
            {"$set": {"next_heartbeat_at": following}},
        )

    async def ended(self, at: datetime) -> list[StoredSubscription]:
        return await self.subscriptions.find(
            {"status": {"$in": ["requested", "active", "error"]}, "end": {"$lte": at}}, limit=500
        )

    # -- notifications (the queue) ----------------------------------------------------------
    async def enqueue(self, notification: Notification) -> bool:
        """Queue a notification; False if one with its id was queued before."""
        return await self.notifications.insert(notification)

    async def claim(self, at: datetime, owner: str, lease: timedelta) -> Notification | None:
        document = await claim_due(self.notifications.collection, at, owner, lease)
        return None if document is None else self.notifications.to_model(document)

    async def numbered(self, notification_id: str, number: int) -> None:
        await self.notifications.update(
            {"_id": notification_id}, {"$set": {"event_number": number}}
        )

    async def events(self, subscription_id: str, low: int, high: int) -> list[Notification]:
        return await self.notifications.find(
            {
                "subscription_id": subscription_id,
                "type": "event-notification",
                "event_number": {"$gte": low, "$lte": high},
            },
            limit=high - low + 1,
            sort="event_number",
        )

    async def settle(
        self,
        notification: Notification,
        owner: str,
        result: TransportResult,
        at: datetime,
        *,
        max_attempts: int,
        backoff: timedelta,
    ) -> Notification | None:
        """Record one attempt (if the lease is still ours), then what it means for the
        subscription: an answered handshake activates it, a dead letter puts it in error."""
        changes, _ = attempt_outcome(notification, result, at, max_attempts, backoff)
        if result.error_code == REFUSED:
            changes["status"] = "refused"
        elif result.error_code == GONE:
            changes["status"] = "cancelled"
        settled = notification.model_copy(update=changes)
        change = NotificationChange(
            status=settled.status, at=at, attempts=settled.attempts, error_code=result.error_code
        )
        saved = await self.notifications.update(
            {"_id": notification.id, "status": "queued", "lease_owner": owner},
            {"$set": changes, "$push": {"history": change.model_dump(mode="python")}},
        )
        if not saved:
            return None
        await self._subscription_after(settled, at)
        return settled

    async def _subscription_after(self, notification: Notification, at: datetime) -> None:
        delivered = notification.status in ("delivered", "sent")
        if notification.type == "handshake" and delivered:
            subscription = await self.get(notification.subscription_id)
            if subscription is None:
                return
            first = (
                None
                if subscription.heartbeat_seconds is None
                else at + timedelta(seconds=subscription.heartbeat_seconds)
            )
            await self.set_status(
                subscription.id,
                "active",
                at,
                only_from=("requested",),
                next_heartbeat_at=first,
            )
        elif notification.status == "dead_lettered":
            what = "handshake" if notification.type == "handshake" else "notification"
            await self.set_status(
                notification.subscription_id,
                "error",
                at,
                error=f"{what} failed: {notification.last_error_code or 'unknown'}",
                only_from=("requested", "active"),
            )


class Notifier(Background):
    def __init__(
        self,
        settings: MessagingSettings,
        store: SubscriptionStore,
        projections: PatientProjections,
        pep: PolicyEnforcementPoint,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.store = store
        self.projections = projections
        self.pep = pep
        self.http = http
        self.on_enqueued: list[Callable[[], None]] = []
        self.limits = Limits(
            min_heartbeat_seconds=settings.subscription_min_heartbeat_seconds,
            max_heartbeat_seconds=settings.subscription_max_heartbeat_seconds,
            max_timeout_seconds=settings.subscription_max_timeout_seconds,
        )
        self.name = "subscription-ticks"

    @property
    def refused_ports(self) -> frozenset[int]:
        """Loopback ports never notified: this service's sidecar, OPA, and what is configured."""
        ports = set(self.settings.subscription_refused_ports)
        for url in (self.settings.dapr_http_endpoint, self.settings.opa_url):
            with contextlib.suppress(ValueError):
                port = httpx.URL(url).port
                if port:
                    ports.add(port)
        return frozenset(ports)

    async def endpoint_problem(self, endpoint: str) -> str | None:
        return await endpoint_problem(
            endpoint,
            development=self.settings.environment == "development",
            refused_ports=self.refused_ports,
        )

    def _wake(self) -> None:
        for wake in self.on_enqueued:
            wake()

    # -- subscribing ------------------------------------------------------------------------
    async def subscribe(self, raw: Any, principal: Principal) -> StoredSubscription:
        """A new subscription the caller may hold: valid, its endpoint callable, the policy
        allowing the caller to search the topic's resources of the patient now."""
        at = now()
        request = parse_subscription(raw, self.limits, at)
        problem = await self.endpoint_problem(request.endpoint)
        if problem is not None:
            raise Unprocessable(
                f"channel.endpoint: {problem}",
                errors=[{"loc": ["channel", "endpoint"], "msg": problem}],
            )
        context = await self.projections.context(request.patient)
        resource = ResourceRef(
            type=request.topic.resource,
            patient=request.patient,
            category=request.topic.decided_as,
        )
        await self.pep.enforce(principal, "search", resource, context)
        key = owner_key(principal)
        if await self.store.count_owned(key) >= self.settings.subscriptions_per_owner:
            raise Unprocessable("too many subscriptions: delete one first")
        subscription = StoredSubscription(
            id=str(uuid.uuid4()),
            topic=request.topic.url,
            resource_type=request.topic.resource,
            patient=request.patient,
            endpoint=request.endpoint,
            content=request.content,
            heartbeat_seconds=request.heartbeat_seconds,
            timeout_seconds=request.timeout_seconds,
            signing_secret=request.signing_secret,
            owner=principal.model_dump(mode="json"),
            owner_key=key,
            reason=request.reason,
            end=request.end,
            status="requested",
            created_at=at,
            updated_at=at,
        )
        await self.store.add(subscription)
        await self.store.enqueue(
            self._notification(
                subscription.id, "handshake", notification_id(subscription.id, "handshake"), at
            )
        )
        self._wake()
        return subscription

    async def unsubscribe(self, subscription_id: str) -> None:
        await self.store.remove(subscription_id)

    def _notification(
        self, subscription_id: str, kind: NotificationType, ident: str, at: datetime, **facts: Any
    ) -> Notification:
        return Notification(
            id=ident,
            subscription_id=subscription_id,
            type=kind,
            status="queued",
            next_attempt_at=at,
            history=[NotificationChange(status="queued", at=at, attempts=0)],
            created_at=at,
            updated_at=at,
            **facts,
        )

    # -- events -----------------------------------------------------------------------------
    async def on_document_recorded(self, event: DocumentRecordedV1, delivery: Delivery) -> Outcome:
        """A journal document: the document-recorded topic's subscriptions."""
        return await self._queue(
            "DocumentReference", event.document_id, event.version, event.category, delivery,
            **_decided_on(event),
        )  # fmt: skip

    async def on_record_changed(self, event: RecordChangedV1, delivery: Delivery) -> Outcome:
        """A result, medication list entry or critical information: its topic's subscriptions."""
        return await self._queue(
            event.resource_type, event.resource_id, event.version, event.category, delivery,
            **_decided_on(event),
        )  # fmt: skip

    async def _queue(
        self,
        resource_type: str,
        resource_id: str,
        version: int,
        category: str,
        delivery: Delivery,
        *,
        patient: str,
        **facts: Any,
    ) -> Outcome:
        """Queue a notification for each active subscription the resource matches (decided
        when it is sent, not here: the decision is the one at delivery time)."""
        at = now()
        queued = 0
        for subscription in await self.store.matching(patient, resource_type):
            topic = TOPICS.get(subscription.topic)
            if topic is None or (topic.categories and category not in topic.categories):
                continue
            ident = notification_id(subscription.id, f"{resource_id}:{version}")
            notification = self._notification(
                subscription.id,
                "event-notification",
                ident,
                at,
                focus_type=resource_type,
                focus_id=resource_id,
                focus_version=version,
                patient=patient,
                category=category,
                **facts,
            )
            if await self.store.enqueue(notification):
                queued += 1
        if queued:
            log.info(
                "subscription notifications queued",
                extra={"event_id": delivery.event_id, "notifications": queued},
            )
            self._wake()
        return Outcome.SUCCESS

    # -- sending ----------------------------------------------------------------------------
    async def refusal(
        self, subscription: StoredSubscription, notification: Notification
    ) -> TransportResult | None:
        """The policy's decision, for the subscriber, on reading the notified resource now:
        None when allowed, else the attempt's result (refused, or retry without a decision)."""
        principal = Principal.model_validate(subscription.owner)
        resource = ResourceRef(
            type=notification.focus_type or subscription.resource_type,
            id=notification.focus_id,
            patient=notification.patient,
            category=notification.category,
            # facts an older event lacks count against the subscriber (fail closed)
            sensitivity="normal" if notification.sensitivity == "normal" else "sensitive",
            withheld_from_patient=notification.withheld_from_patient is not False,
            unit=notification.unit,
            organisation=notification.organisation,
            municipality=notification.municipality,
            author=notification.author,
        )
        context = await self.projections.context(notification.patient or subscription.patient)
        try:
            decision = await self.pep.decide(principal, "read", resource, context)
        except PolicyUnavailable:
            return TransportResult("retry", error_code="policy_unavailable")
        if decision.allow:
            return None
        log.warning(
            "subscription notification refused by policy",
            extra={
                "subscription_id": subscription.id,
                "notification_id": notification.id,
                "reasons": list(decision.reasons),
                "decision_id": decision.decision_id,
            },
        )
        return TransportResult(
            "permanent", error_code=REFUSED, reason=",".join(decision.reasons)[:MAX_REASON]
        )

    async def send(self, notification: Notification) -> TransportResult:
        """One attempt: the decision (events), the signed Bundle, the endpoint's answer."""
        subscription = await self.store.get(notification.subscription_id)
        if subscription is None or subscription.status == "off":
            return TransportResult("permanent", error_code=GONE)
        if notification.type == "event-notification":
            refused = await self.refusal(subscription, notification)
            if refused is not None:
                return refused
            if notification.event_number is None:
                number = await self.store.next_event_number(subscription.id)
                if number is None:
                    return TransportResult("permanent", error_code=GONE)
                await self.store.numbered(notification.id, number)
                notification = notification.model_copy(update={"event_number": number})
                subscription = subscription.model_copy(update={"events_since_start": number})
        problem = await self.endpoint_problem(subscription.endpoint)
        if problem is not None:
            return TransportResult("permanent", error_code="endpoint_refused", reason=problem)
        bundle = notification_bundle(
            subscription, notification, self.settings.public_fhir_base, now()
        )
        body = json.dumps(bundle, separators=(",", ":")).encode()
        headers = {
            "content-type": FHIR_JSON,
            SIGNATURE_HEADER: signature(subscription.signing_secret, body),
        }
        try:
            async with self.http.stream(
                "POST",
                subscription.endpoint,
                content=body,
                headers=headers,
                timeout=float(subscription.timeout_seconds),
                follow_redirects=False,
            ) as response:
                answer = b""
                async for chunk in response.aiter_bytes():
                    answer += chunk
                    if len(answer) >= MAX_ANSWER_BYTES:
                        break
                status = response.status_code
        except httpx.HTTPError as error:
            return TransportResult(
                "retry", error_code="endpoint_unreachable", reason=type(error).__name__
            )
        return peer_result(status, answer[:MAX_ANSWER_BYTES])

    # -- heartbeats and ends ----------------------------------------------------------------
    async def tick(self) -> int:
        """Queue the heartbeats that are due and switch off ended subscriptions."""
        at = now()
        queued = 0
        for subscription in await self.store.due_heartbeats(at):
            if subscription.heartbeat_seconds is None or subscription.next_heartbeat_at is None:
                continue
            slot = subscription.next_heartbeat_at.isoformat()
            if await self.store.take_heartbeat(subscription, at):
                ident = notification_id(subscription.id, f"heartbeat:{slot}")
                if await self.store.enqueue(
                    self._notification(subscription.id, "heartbeat", ident, at)
                ):
                    queued += 1
        for subscription in await self.store.ended(at):
            await self.store.set_status(
                subscription.id, "off", at, only_from=("requested", "active", "error")
            )
        if queued:
            self._wake()
        return queued

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as error:
                log.warning("subscription tick failed", extra={"error": type(error).__name__})
            await asyncio.sleep(self.settings.poll_seconds)


def _decided_on(event: DocumentRecordedV1 | RecordChangedV1) -> dict[str, Any]:
    """The facts of a journal event a read of its resource is decided on (codes only)."""
    facts = ("patient", "sensitivity", "withheld_from_patient", "unit", "organisation")
    named = {name: getattr(event, name) for name in (*facts, "municipality", "author")}
    return {**named, "event_at": event.recorded_at}
