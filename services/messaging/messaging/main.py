"""The messaging service: electronic messages with actors who are not on the platform.

Wiring: read models, the queue, the worker, the rules, the routes."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from akson_common.app import Platform, ServedApp, create_service
from akson_common.events import (
    DOCUMENT_RECORDED,
    RECORD_CHANGED,
    WELFARE_ALERT_RAISED,
    Delivery,
    DocumentRecordedV1,
    Outcome,
)
from akson_common.projections import PatientProjections
from akson_common.settings import settings_for
from messaging.access import MessageAccess, SubscriptionAccess
from messaging.api import router
from messaging.directory import Directory
from messaging.events import EVENTS
from messaging.fhir_api import router as fhir_router
from messaging.models import OutboundMessage
from messaging.notifier import Notifier, SubscriptionStore
from messaging.service import Messaging
from messaging.settings import MessagingSettings
from messaging.store import InboundStore, OutboundQueue
from messaging.subscriptions import Notification
from messaging.transport import Transport, TransportResult
from messaging.worker import SendWorker


@dataclass
class Workers:
    """What runs beside the routes, started and stopped with the platform: the send worker, the
    subscription notifier and its notification workers, and the subscribers' HTTP client."""

    worker: SendWorker[OutboundMessage]
    notifier: Notifier
    notifications: list[SendWorker[Notification]]
    subscriber_http: httpx.AsyncClient

    def start(self) -> None:
        self.worker.start()
        for notification_worker in self.notifications:
            notification_worker.start()
        self.notifier.start()

    async def stop(self) -> None:
        await self.notifier.stop()
        for notification_worker in self.notifications:
            await notification_worker.stop()
        await self.worker.stop()
        await self.subscriber_http.aclose()


def create_app(settings: MessagingSettings) -> FastAPI:
    def configure(app: FastAPI, platform: Platform) -> None:
        queue = OutboundQueue(platform.database, platform.outbox)
        service = _messaging(settings, platform, queue)
        worker = _send_worker(settings, platform, queue)
        service.on_enqueued.append(worker.wake)
        workers = _notifications(settings, platform, service.projections, worker)
        _subscribe(platform, service, workers.notifier)
        app.state.settings = settings
        app.state.messaging = service
        app.state.message_access = MessageAccess(service, platform.pep)
        app.state.subscription_access = SubscriptionAccess(workers.notifier, platform.pep)
        app.state.worker = worker
        app.state.notifier = workers.notifier
        app.state.notifications = workers.notifications
        platform.beside(workers)

    return create_service(
        settings,
        title="Akson messaging",
        events=EVENTS,
        routers=[router, fhir_router],
        configure=configure,
    )


def _messaging(settings: MessagingSettings, platform: Platform, queue: OutboundQueue) -> Messaging:
    return Messaging(
        settings,
        queue,
        InboundStore(platform.database, platform.outbox),
        Directory(platform.database, platform.subscriptions),
        PatientProjections.of(platform, directives=True),
        platform.pep,
    )


def _send_worker(
    settings: MessagingSettings, platform: Platform, queue: OutboundQueue
) -> SendWorker[OutboundMessage]:
    """The worker that sends queued messages through the transport binding."""
    transport = Transport(
        platform.http,
        settings.dapr_http_endpoint,
        settings.transport_binding,
        settings.transport_path,
        settings.dapr_api_token.get_secret_value(),
        settings.transport_timeout_seconds,
    )

    async def send(message: OutboundMessage) -> TransportResult:
        return await transport.send(message.recipient_her_id, message.bundle)

    return SendWorker(queue, send, settings)


def _notifications(
    settings: MessagingSettings,
    platform: Platform,
    projections: PatientProjections,
    worker: SendWorker[OutboundMessage],
) -> Workers:
    """The FHIR Subscriptions notifier and the workers that send its notifications."""
    # subscribers' rest-hook endpoints: no proxies from the environment, no redirects
    subscriber_http = httpx.AsyncClient(trust_env=False, follow_redirects=False)
    notifier = Notifier(
        settings, SubscriptionStore(platform.database), projections, platform.pep, subscriber_http
    )
    notifications = [
        SendWorker(notifier.store, notifier.send, settings, name=f"notification-worker-{n}")
        for n in range(settings.notification_workers)
    ]
    notifier.on_enqueued.extend(w.wake for w in notifications)
    return Workers(worker, notifier, notifications, subscriber_http)


def _subscribe(platform: Platform, service: Messaging, notifier: Notifier) -> None:
    """The topics messaging consumes (one handler per topic)."""

    async def on_document_recorded(event: DocumentRecordedV1, delivery: Delivery) -> Outcome:
        # the dispatch rules, then the subscriptions
        dispatched = await service.on_document_recorded(event, delivery)
        if dispatched is not Outcome.SUCCESS:
            return dispatched
        return await notifier.on_document_recorded(event, delivery)

    platform.subscriptions.on(DOCUMENT_RECORDED)(on_document_recorded)
    platform.subscriptions.on(RECORD_CHANGED)(notifier.on_record_changed)
    platform.subscriptions.on(WELFARE_ALERT_RAISED)(service.on_welfare_alert)


__getattr__ = ServedApp(lambda: create_app(settings_for(MessagingSettings, "messaging")))
