"""The integrations service: payroll and logistics exports, minimised by policy.

Wiring: the consumers, the exporter, the operators' routes."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, ServedApp, create_service
from akson_common.events import SUPPLIES_USED, VISIT_COMPLETED
from akson_common.settings import settings_for
from integrations.api import router
from integrations.events import EVENTS
from integrations.exports import Exporter
from integrations.logistics import Logistics
from integrations.payroll import Payroll
from integrations.received import ReceivedEvents
from integrations.reports import Reports
from integrations.settings import IntegrationsSettings


def create_app(settings: IntegrationsSettings) -> FastAPI:
    def configure(app: FastAPI, platform: Platform) -> None:
        exporter = Exporter(platform, settings)
        platform.beside(exporter)
        received = ReceivedEvents(platform.database)
        payroll = Payroll(platform.database, settings, received, exporter.wake)
        logistics = Logistics(platform.database, settings, received, exporter.wake)
        platform.subscriptions.on(VISIT_COMPLETED)(payroll.on_visit_completed)
        platform.subscriptions.on(SUPPLIES_USED)(logistics.on_supplies_used)
        app.state.exporter = exporter
        app.state.reports = Reports(platform.database, platform.pep)

    return create_service(
        settings,
        title="Akson integrations",
        events=EVENTS,
        routers=[router],
        configure=configure,
    )


__getattr__ = ServedApp(lambda: create_app(settings_for(IntegrationsSettings, "integrations")))
