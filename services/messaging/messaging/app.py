"""Wiring of the messaging service: read models, the queue, the worker, the rules, the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from akson_common.app import Platform, create_service
from akson_common.events import DOCUMENT_RECORDED
from akson_common.projections import MasterDataProjections
from messaging.api import router
from messaging.directory import Directory
from messaging.service import Messaging
from messaging.settings import MessagingSettings
from messaging.store import InboundStore, OutboundQueue
from messaging.transport import Transport
from messaging.worker import SendWorker
from messaging.writes import LockedOutbox


def create_app(settings: MessagingSettings) -> FastAPI:
    def configure(app: FastAPI, platform: Platform) -> None:
        outbox = LockedOutbox(platform.database, platform.publisher, settings.outbox_sweep_seconds)
        queue = OutboundQueue(platform.database, outbox)
        service = Messaging(
            settings,
            queue,
            InboundStore(platform.database, outbox),
            Directory(platform.database, platform.subscriptions),
            MasterDataProjections(platform.database, platform.subscriptions),
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

        # messaging's outbox relay and the worker run inside the platform's lifespan
        # (database and sidecar client open)
        platform_lifespan = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with platform_lifespan(app):
                outbox.start()
                worker.start()
                try:
                    yield
                finally:
                    await worker.stop()
                    await outbox.stop()

        app.router.lifespan_context = lifespan

    return create_service(settings, title="Akson messaging", routers=[router], configure=configure)
