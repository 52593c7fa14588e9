"""The consent service: patients' blocks, reservations and sharing consents.

Wiring: master data's read models, the directives, the routes."""

from __future__ import annotations

from fastapi import FastAPI

from akson_common.app import Platform, ServedApp, create_service
from akson_common.projections import PatientProjections
from akson_common.settings import ServiceSettings, settings_for
from consent.api import router
from consent.events import EVENTS
from consent.service import ConsentAccess, ConsentDirectives


def configure(app: FastAPI, platform: Platform) -> None:
    app.state.projections = PatientProjections.of(platform)
    app.state.directives = ConsentDirectives(platform)
    app.state.access = ConsentAccess(app.state.directives, platform.pep, app.state.projections)


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_service(
        settings, title="Akson consent", events=EVENTS, routers=[router], configure=configure
    )


__getattr__ = ServedApp(lambda: create_app(settings_for(ServiceSettings, "consent")))
