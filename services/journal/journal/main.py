"""The journal service: the shared record (FHIR R4) and the read models access depends on."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, create_service
from akson_common.settings import ServiceSettings, settings_for
from journal.api import router
from journal.documents import DocumentStore
from journal.projections import Projections


def configure(app: FastAPI, platform: Platform) -> None:
    app.state.projections = Projections(platform.database, platform.subscriptions)
    app.state.documents = DocumentStore(platform.database)


app = create_service(
    settings_for(ServiceSettings, "journal"),
    title="Akson journal",
    routers=[router],
    configure=configure,
)
