"""The audit service: OPA's decision log, tamper-evident, for auditors and citizens."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, ServedApp, create_service
from akson_common.settings import settings_for
from audit import api, completeness, directory, quarantine, reviews, signals
from audit.events import EVENTS
from audit.intake import router
from audit.settings import AuditSettings
from audit.store import DecisionStore


def create_app(settings: AuditSettings) -> FastAPI:
    background: list[completeness.Reconciler] = []

    def configure(app: FastAPI, platform: Platform) -> None:
        app.state.decisions = DecisionStore(
            platform.database, checkpoint_every=settings.checkpoint_every
        )
        app.state.reviews = reviews.ReviewQueue(
            platform.database, platform.subscriptions, platform.outbox
        )
        app.state.directory = directory.Directory(platform.database, platform.subscriptions)
        app.state.reconciler = completeness.Reconciler(
            platform.database,
            platform.subscriptions,
            platform.outbox,
            grace_seconds=settings.reconcile_grace_seconds,
            interval_seconds=settings.reconcile_interval_seconds,
        )
        app.state.quarantine = quarantine.Quarantine(platform.database, platform.outbox)
        background.append(app.state.reconciler)

    async def start(platform: Platform) -> None:
        for task in background:
            task.start()

    async def stop(platform: Platform) -> None:
        for task in background:
            await task.stop()

    return create_service(
        settings,
        title="Akson audit",
        events=EVENTS,
        routers=[
            router,
            api.router,
            api.citizen_router,
            reviews.router,
            completeness.router,
            quarantine.router,
            signals.router,
        ],
        # the intake screens each entry itself: one bad entry is quarantined, not the batch
        unchecked_bodies=("/opa/decision-logs",),
        configure=configure,
        on_startup=start,
        on_shutdown=stop,
    )


__getattr__ = ServedApp(lambda: create_app(settings_for(AuditSettings, "audit")))
