"""Wiring of the messaging service: read models, the queue, the worker, the rules, the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from akson_common.app import Platform, create_service
from akson_common.events import DOCUMENT_RECORDED
from akson_common.projections import PatientProjections
from messaging.api import router
from messaging.directory import Directory
from messaging.service import Messaging
from messaging.settings import MessagingSettings
from messaging.store import InboundStore, OutboundQueue
from messaging.transport import Transport
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
        transport = Transport(
            platform.http,
            settings.dapr_http_endpoint,
            settings.transport_binding,
            settings.transport_path,
            settings.dapr_api_token.get_secret_value(),
            settings.transport_timeout_seconds,
        )
        worker = SendWorker(queue, transport, settings)
        service.on_enqueued.append(worker.wake)
        platform.subscriptions.on(DOCUMENT_RECORDED)(service.on_document_recorded)
        app.state.settings = settings
        app.state.messaging = service
        app.state.worker = worker

        # the worker runs inside the platform's lifespan
        # (database and sidecar client open)
        platform_lifespan = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with platform_lifespan(app):
                worker.start()
                try:
                    yield
                finally:
                    await worker.stop()

        app.router.lifespan_context = lifespan

    return create_service(settings, title="Akson messaging", routers=[router], configure=configure)
