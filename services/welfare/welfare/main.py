"""The welfare service: welfare-technology devices and their messages into the shared record.

Wiring: read models, the registry, the intake, the journal writer."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, ServedApp, create_service
from akson_common.background import Loop
from akson_common.credentials import ClientCredentials
from akson_common.projections import PatientProjections
from akson_common.settings import settings_for
from welfare.api import router
from welfare.events import EVENTS
from welfare.service import DeviceAccess, Devices, Intake
from welfare.settings import WelfareSettings
from welfare.store import WelfareStore
from welfare.writer import JournalWriter


def create_app(settings: WelfareSettings) -> FastAPI:
    def configure(app: FastAPI, platform: Platform) -> None:
        # care relations and consent directives (the device consents among them)
        projections = PatientProjections.of(platform, directives=True)
        store = WelfareStore(platform.database)
        credentials = ClientCredentials(
            platform.http,
            settings.token_endpoint,
            settings.client_id,
            key_file=settings.client_key_file,
            key=settings.client_key.get_secret_value(),
        )
        writer = JournalWriter(
            platform.http,
            credentials,
            sidecar=settings.dapr_http_endpoint,
            dapr_token=settings.dapr_api_token.get_secret_value(),
            app_id=settings.journal_app_id,
            timeout=settings.invoke_timeout_seconds,
        )
        devices = Devices(store)
        app.state.projections = projections
        app.state.devices = devices
        app.state.device_access = DeviceAccess(devices, platform.pep, projections)
        intake = Intake(platform, settings, store, devices, projections, writer)
        app.state.intake = intake
        # the retry worker: every replica runs one; the lease keeps them apart
        poll = settings.journal_retry_poll_seconds
        platform.beside(Loop(lambda: intake.run_retries(poll), name="journal-retries"))

    return create_service(
        settings, title="Akson welfare", events=EVENTS, routers=[router], configure=configure
    )


__getattr__ = ServedApp(lambda: create_app(settings_for(WelfareSettings, "welfare")))
