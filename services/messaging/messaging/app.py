"""Wiring of the messaging service: read models, the queue, the worker, the rules, the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from akson_common.app import Platform, create_service
from akson_common.events import (
    DOCUMENT_RECORDED,
    RECORD_CHANGED,
    WELFARE_ALERT_RAISED,
    Delivery,
    DocumentRecordedV1,
    Outcome,
)
from akson_common.projections import PatientProjections
from messaging.api import router
from messaging.directory import Directory
from messaging.fhir_api import router as fhir_router
from messaging.models import OutboundMessage
from messaging.notifier import Notifier, SubscriptionStore
from messaging.service import Messaging
from messaging.settings import MessagingSettings
from messaging.store import InboundStore, OutboundQueue
from messaging.transport import Transport, TransportResult
from messaging.worker import SendWorker


def create_app(settings: MessagingSettings) -> FastAPI:
    def configure(app: FastAPI, platform: Platform) -> None:
        queue = OutboundQueue(platform.database, platform.outbox)
        service = Messaging(
            settings,
            queue,
            InboundStore(platform.database, platform.outbox),
            Directory(platform.database, platform.subscriptions),
            PatientProjections(
                platform.database,
                platform.subscriptions,
                directives=True,
                cache_seconds=settings.projection_cache_seconds,
            ),
            platform.pep,
        )
        # subscribers' rest-hook endpoints: no proxies from the environment, no redirects
        subscriber_http = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        projections = service.projections
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

        worker = SendWorker(queue, send, settings)
        service.on_enqueued.append(worker.wake)
        notifier = Notifier(
            settings,
            SubscriptionStore(platform.database),
            projections,
            platform.pep,
            subscriber_http,
        )
        notifications = [
            SendWorker(notifier.store, notifier.send, settings, name=f"notification-worker-{n}")
            for n in range(settings.notification_workers)
        ]
        notifier.on_enqueued.extend(w.wake for w in notifications)

        async def on_document_recorded(event: DocumentRecordedV1, delivery: Delivery) -> Outcome:
            # one handler per topic: the dispatch rules, then the subscriptions
            dispatched = await service.on_document_recorded(event, delivery)
            if dispatched is not Outcome.SUCCESS:
                return dispatched
            return await notifier.on_document_recorded(event, delivery)

        platform.subscriptions.on(DOCUMENT_RECORDED)(on_document_recorded)
        platform.subscriptions.on(RECORD_CHANGED)(notifier.on_record_changed)
        platform.subscriptions.on(WELFARE_ALERT_RAISED)(service.on_welfare_alert)
        app.state.settings = settings
        app.state.messaging = service
        app.state.worker = worker
        app.state.notifier = notifier
        app.state.notifications = notifications

        # the worker runs inside the platform's lifespan
        # (database and sidecar client open)
        platform_lifespan = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with platform_lifespan(app):
                worker.start()
                for notification_worker in notifications:
                    notification_worker.start()
                notifier.start()
                try:
                    yield
                finally:
                    await notifier.stop()
                    for notification_worker in notifications:
                        await notification_worker.stop()
                    await worker.stop()
                    await subscriber_http.aclose()

        app.router.lifespan_context = lifespan

    return create_service(
        settings, title="Akson messaging", routers=[router, fhir_router], configure=configure
    )
