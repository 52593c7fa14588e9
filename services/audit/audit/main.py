"""The audit service: OPA's decision log, tamper-evident, for auditors and citizens."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, ServedApp, create_service
from akson_common.settings import settings_for
from audit import api
from audit.completeness import Reconciler
from audit.directory import Directory
from audit.events import EVENTS
from audit.intake import Intake
from audit.quarantine import Quarantine
from audit.reviews import ReviewQueue
from audit.service import AuditLog
from audit.settings import AuditSettings
from audit.store import DecisionStore


def create_app(settings: AuditSettings) -> FastAPI:
    def configure(app: FastAPI, platform: Platform) -> None:
        decisions = DecisionStore(platform.database, checkpoint_every=settings.checkpoint_every)
        reviews = ReviewQueue(platform.database, platform.subscriptions, platform.outbox)
        reconciler = Reconciler(
            platform.database,
            platform.subscriptions,
            platform.outbox,
            grace_seconds=settings.reconcile_grace_seconds,
            interval_seconds=settings.reconcile_interval_seconds,
        )
        quarantine = Quarantine(platform.database, platform.outbox)
        directory = Directory(platform.database, platform.subscriptions)
        app.state.decisions = decisions
        app.state.reconciler = reconciler
        app.state.intake = Intake(settings, decisions, quarantine, reconciler)
        app.state.audit_log = AuditLog(
            platform.pep, decisions, directory, reconciler, quarantine, reviews
        )
        platform.beside(reconciler)

    return create_service(
        settings,
        title="Akson audit",
        events=EVENTS,
        routers=[
            api.intake_router,
            api.router,
            api.citizen_router,
            api.reviews_router,
            api.completeness_router,
            api.signals_router,
        ],
        # the intake screens each entry itself: one bad entry is quarantined, not the batch
        unchecked_bodies=("/opa/decision-logs",),
        configure=configure,
    )


__getattr__ = ServedApp(lambda: create_app(settings_for(AuditSettings, "audit")))
