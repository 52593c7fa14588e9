"""The journal service: the shared record (FHIR R4) and the read models access depends on."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, ServedApp, create_service
from akson_common.projections import PatientProjections
from akson_common.settings import settings_for
from journal.access import Access
from journal.api import router
from journal.events import EVENTS
from journal.service import Journal
from journal.settings import JournalSettings


def create_app(settings: JournalSettings) -> FastAPI:
    def configure(app: FastAPI, platform: Platform) -> None:
        # patients with their care relations and consent directives (what its decisions need)
        projections = PatientProjections.of(platform, directives=True)
        access = Access(platform.pep, projections, platform.database, platform.outbox)
        app.state.projections = projections
        app.state.journal = Journal(platform.database, platform.outbox, access)
        app.state.journal_settings = settings

    return create_service(
        settings, title="Akson journal", events=EVENTS, routers=[router], configure=configure
    )


__getattr__ = ServedApp(lambda: create_app(settings_for(JournalSettings, "journal")))
